"""mkdocs hook: add the reference pages tools/docs_gen.py generates from the code to the site.

Named in mkdocs.yml (`hooks:`). The pages exist only in the build: nothing generated is
committed, so none can be stale.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent


def on_files(files: Files, config: Any) -> Files:
    if str(ROOT) not in sys.path:  # mkdocs loads this file by path: the checkout is not on it
        sys.path.insert(0, str(ROOT))
    from tools import docs_gen

    for path, text in docs_gen.pages().items():
        files.append(File.generated(config, path, content=text))
    return files
