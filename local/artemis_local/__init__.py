"""The local runtime: embedded Postgres, AWS emulator, fake GitHub, API gateway adapter."""
