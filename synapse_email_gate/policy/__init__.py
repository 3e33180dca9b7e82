"""The rules in force on every process: compiled, kept in step, applied to open requests."""
