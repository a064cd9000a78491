"""Tools that run and measure the service: the image's launch command, the benchmark, the
naive baseline it is compared with, and the locustfile."""
