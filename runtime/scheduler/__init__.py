"""Scheduled tasks on this machine: cron triggers, firing policies, the scheduler loop.

Local use only; nothing here ships inside a zip.
"""
