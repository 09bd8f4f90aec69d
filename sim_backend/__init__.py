"""Simulated radio backend: channel emulator, SimRadio, ZMQ channel broker."""
