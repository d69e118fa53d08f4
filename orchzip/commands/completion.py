"""`orchzip completion SHELL`: a tab-completion script for bash, zsh or tcsh.

Generated from orchzip's own argparse parser by shtab, so commands, options and choices stay
in step with the code without a hand-kept list.
"""

SHELLS = ("bash", "zsh", "tcsh")


def cmd_completion(args):
    import shtab
    from orchzip.cli import build_parser
    print(shtab.complete(build_parser(), shell=args.shell))


def register(subparsers):
    p = subparsers.add_parser(
        "completion", help="print a shell completion script (bash, zsh, tcsh)",
        description="Print a tab-completion script for orchzip. Load it for this shell with "
        "'eval \"$(orchzip completion bash)\"', or keep it: "
        "'orchzip completion bash > ~/.local/share/bash-completion/completions/orchzip'.",
    )
    p.add_argument("shell", choices=SHELLS, help="the shell to complete in")
    p.set_defaults(func=cmd_completion)
