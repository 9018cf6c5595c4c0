"""The parts of bench/journey: the data it generates and the processes it times."""
