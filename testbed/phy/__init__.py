"""testbed.phy"""
