"""A local stand-in for the Azure AI Voice Live realtime endpoint (``vlrun emulate``).

Tests and the runner's offline default start it in-process::

    async with running_emulator(scenario="model.yaml", speed=0) as emu:
        async with connect(endpoint=emu.endpoint, credential=AzureKeyCredential("x"), model="m"):
            ...
"""

from runner.emulator.faults import Faults
from runner.emulator.model import Script, ScriptError, load_script
from runner.emulator.record import SessionRecord
from runner.emulator.server import Emulator, embedded_emulator, emulator_thread, running_emulator

__all__ = [
    "Emulator",
    "Faults",
    "Script",
    "ScriptError",
    "SessionRecord",
    "embedded_emulator",
    "emulator_thread",
    "load_script",
    "running_emulator",
]
