"""Runners of the container job types, written once against the DockerClient Protocol.

``exec_job.run_exec`` (job-exec) and ``run_job.run_container`` (job-run) use
only ``context.drivers.docker_client``, so every Docker client driver gets the
same job logic; nothing here imports the Docker SDK. ``options`` turns a job's
keys into what the engine needs; ``streams`` copies output into the run's
buffers and stops runs that pass ``max-runtime`` or are cancelled.

Nothing is imported here: ``ofelia_core.jobtypes`` reaches these modules only
when a run starts, so ``ofelia validate`` never loads them.
"""
