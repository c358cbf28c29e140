"""Create N projects for a benchmark run and print their ids, comma-separated.

python bench/projects.py --url http://127.0.0.1:8000 --token T --count 20
"""

from __future__ import annotations

import argparse
import json
import urllib.request


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--count", type=int, default=1)
    args = parser.parse_args()
    ids = []
    for i in range(args.count):
        request = urllib.request.Request(
            args.url.rstrip("/") + "/api/v1/projects",
            data=json.dumps({"name": f"bench {i}"}).encode(),
            headers={"Authorization": f"Bearer {args.token}", "Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            ids.append(json.load(response)["id"])
    print(",".join(ids))


if __name__ == "__main__":
    main()
