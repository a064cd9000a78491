"""The service's container image outside the cloud: the one reader of its Dockerfile, the
offline base image recipe and podman's settings for the Makefile's image targets."""
