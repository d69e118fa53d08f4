"""The MLOps API client of the commands that talk to a Wallaroo instance (upload, remote, apply
--remote), made from their instance flags."""

import sys


def client_from_args(args):
    """The MLOps API client the instance flags (or WALLAROO_* variables) name; asks for a missing
    password on a terminal."""
    from orchzip.mlops import Settings
    settings = Settings.from_argparse(args)
    if settings.user and not settings.token and not settings.password and sys.stdin.isatty():
        import getpass
        settings.password = getpass.getpass(f"password of {settings.user}: ")
        settings.password_source = "prompt"
    return settings.create_client()
