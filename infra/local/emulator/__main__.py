"""``python -m tracklayer_local.emulator``: serve the local Snowflake."""

from tracklayer_local.emulator.app import main

main()
