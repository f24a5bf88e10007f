"""``simqos validate``: does the simulator predict the real device? (see :mod:`simqos.validate.run`)."""
