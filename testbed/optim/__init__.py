"""testbed.optim"""
