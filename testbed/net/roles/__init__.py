"""Bench roles as processes: node, receiver, channel agent, controller jobs, bench runner."""
