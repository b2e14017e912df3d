"""Validates flowctl's OpenLineage events (one JSON object per line in FILE) with the official
OpenLineage Python client (PyPI `openlineage-python`), whose model is generated from the
OpenLineage JSON schema: every event is rebuilt as a `RunEvent` (the generated validators check
the event type, the RFC 3339 eventTime, the runId UUID, the producer/schemaURL URIs, required
fields) and serialised back; the result must equal what flowctl wrote. Also checks that every
run has exactly one START and one terminal event.

Usage: python3 validate_openlineage.py FILE
Prints one JSON summary line; exits 1 on the first invalid event, 3 when the client is missing.
"""

import json
import sys

try:
    from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
    from openlineage.client.facet_v2 import error_message_run, parent_run
    from openlineage.client.serde import Serde
except ImportError as e:  # pragma: no cover - the hint is the point
    print(
        f"python package openlineage-python is missing ({e}); "
        "install it with: python3 -m pip install -r tests/python/requirements.txt",
        file=sys.stderr,
    )
    sys.exit(3)


def rebuild(e):
    facets = {}
    f = e["run"].get("facets", {})
    if "parent" in f:
        p = f["parent"]
        facets["parent"] = parent_run.ParentRunFacet(
            run=parent_run.Run(runId=p["run"]["runId"]),
            job=parent_run.Job(namespace=p["job"]["namespace"], name=p["job"]["name"]),
        )
    if "errorMessage" in f:
        m = f["errorMessage"]
        facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=m["message"], programmingLanguage=m["programmingLanguage"]
        )
    unknown = set(f) - {"parent", "errorMessage"}
    if unknown:
        raise ValueError(f"unexpected run facets {unknown}")
    return RunEvent(
        eventType=RunState(e["eventType"]),
        eventTime=e["eventTime"],
        run=Run(runId=e["run"]["runId"], facets=facets),
        job=Job(namespace=e["job"]["namespace"], name=e["job"]["name"]),
        producer=e["producer"],
        inputs=[InputDataset(namespace=d["namespace"], name=d["name"]) for d in e.get("inputs", [])],
        outputs=[OutputDataset(namespace=d["namespace"], name=d["name"]) for d in e.get("outputs", [])],
    )


def strip(d):
    """The fields flowctl writes, for comparison (facet producers are the client's own)."""
    def bare(x):
        return {k: v for k, v in x.items() if v not in ({}, [], None)}

    out = {k: d[k] for k in ("eventType", "eventTime", "producer", "schemaURL")}
    out["job"] = bare(d["job"])
    out["inputs"] = [bare(x) for x in d.get("inputs", [])]
    out["outputs"] = [bare(x) for x in d.get("outputs", [])]
    out["runId"] = d["run"]["runId"]
    out["facets"] = sorted(d["run"].get("facets", {}))
    return out


def main():
    events = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    runs = {}
    for i, e in enumerate(events):
        try:
            back = Serde.to_dict(rebuild(e))
        except Exception as err:  # noqa: BLE001 - report any validation failure
            print(f"event {i} is not a valid OpenLineage RunEvent: {err}\n{json.dumps(e)}", file=sys.stderr)
            sys.exit(1)
        if strip(back) != strip(e):
            print(f"event {i} does not round-trip:\n{strip(e)}\n{strip(back)}", file=sys.stderr)
            sys.exit(1)
        runs.setdefault(e["run"]["runId"], []).append(e["eventType"])
    for run, types in runs.items():
        if types[0] != "START" or len(types) != 2 or types[1] not in ("COMPLETE", "FAIL", "ABORT"):
            print(f"run {run} has events {types}, expected START then one terminal", file=sys.stderr)
            sys.exit(1)
    kinds = {}
    for e in events:
        kinds[e["eventType"]] = kinds.get(e["eventType"], 0) + 1
    print(json.dumps({"events": len(events), "runs": len(runs), "by_type": kinds}))


if __name__ == "__main__":
    main()
