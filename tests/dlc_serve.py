"""Serve one request through the inference toolkit, in whatever interpreter runs this file.

`python tests/dlc_serve.py MODEL_DIR < request.json` prints the response body. The tests run it
under `.dlc-venv` (the inference container's transformers) to prove that archives exported with
the training group's newer transformers still load and answer there.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import transformers

from tests.toolkit_support import invoke, served


def main() -> int:
    body = sys.stdin.buffer.read()
    with served(Path(sys.argv[1])) as service:
        response = invoke(service, body)
    print(json.dumps({"transformers": transformers.__version__, "response": json.loads(response)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
