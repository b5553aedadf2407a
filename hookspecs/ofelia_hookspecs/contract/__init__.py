"""Contract test kits: the behaviour the core relies on, for every driver of a concern.

A plugin author subclasses a kit in their own test suite and provides one
fixture that builds their driver; every test of the kit then runs against it::

    from ofelia_hookspecs.contract.tokens import TokenManagerContract

    class TestMyTokenManager(TokenManagerContract):
        @pytest.fixture
        def make_token_manager(self):
            return lambda settings, clock: MyTokenManager(settings, clock)

Kits: :mod:`.tokens` (``TokenManagerContract``), :mod:`.buffers`
(``BufferPoolContract``), :mod:`.metrics` (``MetricsRecorderContract``) and
:mod:`.docker` for the Docker client. They need pytest
(``pip install 'ofelia-hookspecs[contract]'``); importing this package alone
does not, so nothing here is imported until a test module asks for a kit.
"""
