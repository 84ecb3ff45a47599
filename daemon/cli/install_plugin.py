"""``install-plugin`` and ``uninstall-plugin``: the commands over daemon/gimp_install/."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from neural_style.daemon.gimp_install.discovery import candidate_gimp_dirs, plugins_dir
from neural_style.daemon.gimp_install.errors import InstallError
from neural_style.daemon.gimp_install.install import PLUGIN_NAME, install_into, uninstall_from
from neural_style.daemon.gimp_install.interpreter import (
    host_like_target,
    python_command_for,
    query_python,
)
from neural_style.shared.flatpak import FLATPAK_APP


def _resolve_dirs(given: Sequence[str]) -> list[Path]:
    if given:
        return [Path(d).expanduser() for d in given]
    found = candidate_gimp_dirs()
    if not found:
        raise InstallError(
            "No GIMP 3 profile folder found (looked in $GIMP3_DIRECTORY, ~/.config/GIMP/3.*, "
            f"~/.var/app/{FLATPAK_APP}/config/GIMP/3.*). Start GIMP 3 once so it creates "
            "its profile, or name the folder with --gimp-dir DIR."
        )
    return found


def cmd_install(args: argparse.Namespace) -> int:
    """Entry point of ``neural-style install-plugin``; returns the exit status."""
    try:
        dirs = _resolve_dirs(args.gimp_dir)
        for gimp_dir in dirs:
            if args.python_version:
                target = host_like_target(args.python_version)
            else:
                command, how = python_command_for(gimp_dir, args.python)
                target = query_python(command, how)
            rerun = ["neural-style", "install-plugin", "--gimp-dir", str(gimp_dir)]
            if args.python:
                rerun += ["--python", args.python]
            print(f"Installing the Neural Style plug-in into {plugins_dir(gimp_dir)}")
            print(f"  GIMP's Python: {target.version} ({target.how}: {shlex.join(target.command)})")
            report = install_into(
                gimp_dir,
                target,
                vendor=not args.no_vendor,
                wheel_dir=Path(args.wheel_dir) if args.wheel_dir else None,
                rerun_hint=shlex.join(rerun),
            )
            print(f"  installed {report.plugin_dir / (PLUGIN_NAME + '.py')}")
        print("Restart GIMP; the filter is Filters > Artistic > Neural Style...")
        print("It needs the daemon running: neural-style serve")
        return 0
    except InstallError as exc:
        print(f"neural-style install-plugin: {exc}", file=sys.stderr)
        return 2


def cmd_uninstall(args: argparse.Namespace) -> int:
    """Entry point of ``neural-style uninstall-plugin``; returns the exit status."""
    try:
        dirs = _resolve_dirs(args.gimp_dir)
        removed = 0
        for gimp_dir in dirs:
            if uninstall_from(gimp_dir):
                removed += 1
                print(f"Removed {plugins_dir(gimp_dir) / PLUGIN_NAME}")
        if not removed:
            print("The Neural Style plug-in was not installed in: " + ", ".join(map(str, dirs)))
        return 0
    except InstallError as exc:
        print(f"neural-style uninstall-plugin: {exc}", file=sys.stderr)
        return 2


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``install-plugin`` and ``uninstall-plugin`` to the CLI.

    Each parser sets ``func`` (taking the parsed namespace, returning an exit status).
    """
    gimp_help = (
        "GIMP 3 profile folder (e.g. $GIMP3_DIRECTORY or ~/.config/GIMP/3.0) or its plug-ins "
        "folder; repeatable. Default: every GIMP 3 profile found."
    )
    p = subparsers.add_parser(
        "install-plugin",
        help="install the GIMP 3 plug-in (Filters > Artistic > Neural Style...)",
        description="`neural-style install-plugin` / `uninstall-plugin`: put the GIMP 3 plug-in "
        "where GIMP finds it.",
    )
    p.add_argument("--gimp-dir", action="append", default=[], metavar="DIR", help=gimp_help)
    p.add_argument(
        "--python",
        metavar="CMD",
        help="command running GIMP's Python, e.g. 'flatpak run --command=python3 org.gimp.GIMP' "
        "(default: detected, see the docs)",
    )
    p.add_argument(
        "--python-version", metavar="X.Y", help="GIMP's Python version, instead of running it"
    )
    p.add_argument(
        "--no-vendor",
        action="store_true",
        help="do not bundle pyzmq/msgpack (GIMP's Python must have them)",
    )
    p.add_argument(
        "--wheel-dir",
        metavar="DIR",
        help="take the pyzmq/msgpack wheels from DIR instead of downloading (offline)",
    )
    p.set_defaults(func=cmd_install)
    u = subparsers.add_parser("uninstall-plugin", help="remove the GIMP 3 plug-in")
    u.add_argument("--gimp-dir", action="append", default=[], metavar="DIR", help=gimp_help)
    u.set_defaults(func=cmd_uninstall)


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry: ``python -m neural_style.daemon.cli.install_plugin install-plugin ...``."""
    parser = argparse.ArgumentParser(prog="neural-style")
    sub = parser.add_subparsers(dest="command", required=True)
    add_commands(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
