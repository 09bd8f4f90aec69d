"""Validated configuration: radio configs (pluto, usrp, sim) and bench files, loaded from YAML.

Import from the modules: `testbed.config.radio` (schemas), `testbed.config.bench` (bench
schema), `testbed.config.loader` (YAML loading with errors that name file, key and fix).
"""
