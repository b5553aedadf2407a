"""Run notifications: which notifiers a job has, the delivery queue and worker, cooldown,
and delivery records. Notifiers themselves (mail, Slack, webhooks, a third party's) come
from plugins through ``ofelia_register_notifiers``; see ``docs/notifications.md``."""
