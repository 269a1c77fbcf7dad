"""``perfkit stalls RUN_DIR``: summarise the watchdog's stall dumps (being written)."""
