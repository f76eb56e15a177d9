"""``sam2-plugins fiftyone install``: make FiftyOne find this plugin after ``pip install``.

FiftyOne loads plugins from ``fo.config.plugins_dir`` (env ``FIFTYONE_PLUGINS_DIR``). This
command links the installed ``fiftyone_sam2`` folder there as ``<plugins_dir>/sam2-plugins``
(a symlink, or a copy with ``--copy`` where links are not possible), so upgrades of the
package are picked up without reinstalling the plugin.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import Optional, Sequence

LINK_NAME = "sam2-plugins"


def plugin_source() -> Path:
    """The folder holding this plugin's ``fiftyone.yml``."""
    return Path(__file__).resolve().parent


def default_plugins_dir() -> Optional[Path]:
    env = os.environ.get("FIFTYONE_PLUGINS_DIR")
    if env:
        return Path(env).expanduser()
    import fiftyone as fo

    d = fo.config.plugins_dir
    return Path(d).expanduser() if d else None


def install(plugins_dir: Optional[Path] = None, copy: bool = False, force: bool = False) -> Path:
    """Link (or copy) the plugin into ``plugins_dir``; returns the installed path.

    Raises:
        ValueError: no plugins dir is configured, or the target exists and is not ours (pass
            ``force`` to replace it).
    """
    plugins_dir = plugins_dir or default_plugins_dir()
    if plugins_dir is None:
        raise ValueError("FiftyOne has no plugins directory: set FIFTYONE_PLUGINS_DIR or "
                         "fo.config.plugins_dir, or pass --plugins-dir")
    plugins_dir.mkdir(parents=True, exist_ok=True)
    target = plugins_dir / LINK_NAME
    src = plugin_source()
    if target.is_symlink() or target.exists():
        ours = target.is_symlink() and target.resolve() == src
        if ours and not copy:
            return target
        if not force and not ours:
            raise ValueError(f"{target} already exists; pass --force to replace it")
        if target.is_symlink() or target.is_file():
            target.unlink()
        else:
            shutil.rmtree(target)
    if copy:
        shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__"))
    else:
        target.symlink_to(src, target_is_directory=True)
    return target


def uninstall(plugins_dir: Optional[Path] = None) -> bool:
    """Remove the link (or copy) made by :func:`install`; returns whether something was removed."""
    plugins_dir = plugins_dir or default_plugins_dir()
    target = (plugins_dir or Path(".")) / LINK_NAME
    if target.is_symlink() or target.is_file():
        target.unlink()
        return True
    if target.is_dir() and (target / "fiftyone.yml").exists():
        shutil.rmtree(target)
        return True
    return False


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``sam2-plugins fiftyone install|uninstall|where [--plugins-dir D] [--copy] [--force]``."""
    parser = argparse.ArgumentParser(prog="sam2-plugins fiftyone",
                                     description="Manage the FiftyOne plugin @sam2-plugins/sam2")
    parser.add_argument("action", choices=("install", "uninstall", "where"))
    parser.add_argument("--plugins-dir", type=Path, default=None,
                        help="default: FIFTYONE_PLUGINS_DIR or fo.config.plugins_dir")
    parser.add_argument("--copy", action="store_true", help="copy instead of symlinking")
    parser.add_argument("--force", action="store_true", help="replace an existing target")
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        if args.action == "where":
            print(plugin_source())
        elif args.action == "install":
            path = install(args.plugins_dir, copy=args.copy, force=args.force)
            print(f"installed @sam2-plugins/sam2 at {path}")
        else:
            print("removed" if uninstall(args.plugins_dir) else "nothing to remove")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
