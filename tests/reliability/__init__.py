"""The reliability campaign: faults, kills, bad input, memory, security."""
