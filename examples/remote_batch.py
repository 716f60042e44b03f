"""One JSONL file, run on the provider's Batch API: cheaper, within 24 h, same output.

The file mixes chat and embeddings lines. ``run_remote_batch_file`` uploads what is
not yet answered, creates one batch per endpoint, keeps the batch ids in a state file
beside the output, polls with a progress line, and writes the results in exactly the
live runner's format. Stop it half way (Ctrl-C) and run it again: it collects the same
batches instead of paying twice. Offline, the embedded server plays the provider (its
batches finish after ``batch_delay`` seconds).
"""

import json
import os
import tempfile

import trio
from _endpoint import MODEL, REAL, open_client

import trioclient

EMBEDDING_MODEL = os.environ.get("TRIOCLIENT_EMBEDDING_MODEL", "text-embedding-3-small")


def write_requests(path: str) -> None:
    with open(path, "w") as f:
        for i, city in enumerate(["Paris", "Lagos", "Lima", "Osaka"]):
            body = {
                "model": MODEL,
                "messages": [{"role": "user", "content": f"One fact about {city}"}],
            }
            line = {
                "custom_id": f"fact-{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": body,
            }
            f.write(json.dumps(line) + "\n")
        body = {"model": EMBEDDING_MODEL, "input": ["Paris", "Lagos", "Lima", "Osaka"]}
        f.write(
            json.dumps(
                {"custom_id": "cities", "method": "POST", "url": "/v1/embeddings", "body": body}
            )
            + "\n"
        )


def print_results(path: str) -> None:
    with open(path) as f:
        for record in map(json.loads, f):
            body = record["response"]["body"]
            if record["custom_id"] == "cities":
                print(f"cities: {len(body['data'])} vectors")
            else:
                print(f"{record['custom_id']}: {body['choices'][0]['message']['content'][:50]}")


async def main() -> None:
    folder = tempfile.mkdtemp()
    requests_path = os.path.join(folder, "requests.jsonl")
    results_path = os.path.join(folder, "results.jsonl")
    write_requests(requests_path)

    def show(progress: trioclient.RemoteBatchProgress) -> None:
        print(f"  {len(progress.batch_ids)} batches: {progress.done}/{progress.total} done")

    async with open_client(server={"batch_delay": 0.5}) as client:
        summary = await trioclient.run_remote_batch_file(
            client,
            requests_path,
            results_path,
            poll_interval=60 if REAL else 0.2,
            on_progress=show,
        )
        print(f"{summary.succeeded} succeeded, {summary.failed} failed")
        again = await trioclient.run_remote_batch_file(client, requests_path, results_path)
        print(f"run again: {again.skipped_already_done} already done, {again.succeeded} sent")

    print_results(results_path)


if __name__ == "__main__":
    trio.run(main)
