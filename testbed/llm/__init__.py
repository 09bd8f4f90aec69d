"""testbed.llm"""
