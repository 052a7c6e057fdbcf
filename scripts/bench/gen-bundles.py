#!/usr/bin/env python3
"""gen-bundles.py: generate N synthetic bundles for the validation benchmark.

Usage: gen-bundles.py N OUTDIR [--invalid-ratio 0.1] [--seed 20260210]
                               [--schema PATH] [--check]

Writes OUTDIR/bundles/bench-NNNN/{bundle.json,smoke.sh,vm.nix}. OUTDIR is the
project root the bundles' paths resolve against (`agentplane --root OUTDIR`):
a bundle's smoke script is `bundles/<name>/smoke.sh`, its outDir
`artifacts/<name>`.

Deterministic: the same N, seed and ratio give byte-identical files. Exactly
round(N * ratio) bundles are invalid against the upstream v0.1 bundle schema
(draft 2020-12), chosen at random (seeded), each with one defect from a mix:
  lane-smoke        spec.policy.lane = "smoke"
  max-run-seconds   spec.policy.maxRunSeconds = 99999
  missing-vm        spec.vm removed
  bad-name          metadata.name violates ^[a-z0-9][a-z0-9-]{1,62}$ (directory
                    name stays bench-NNNN so paths still resolve)
  wrong-apiversion  apiVersion = "agentplane.socioprophet.org/v0.2"

Idempotent: OUTDIR/bundles is removed and rewritten. A manifest
OUTDIR/bundles.manifest.json lists every bundle with its expected verdict, so a
benchmark can check that each tool reached the right count.

--check validates every generated bundle with python `jsonschema` (if
importable) against --schema (default: ../shared/compat/upstream-schemas/
bundle.schema.v0.1.json next to the repo) and asserts the verdicts match.
"""
import argparse
import json
import os
import random
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DEFAULT_SCHEMA = os.environ.get(
    "AGENTPLANE_BUNDLE_SCHEMA",
    os.path.join(REPO, "..", "shared", "compat", "upstream-schemas", "bundle.schema.v0.1.json"),
)
DEFECTS = ["lane-smoke", "max-run-seconds", "missing-vm", "bad-name", "wrong-apiversion"]

SMOKE = """#!/bin/sh
# benchmark smoke script: writes one product file
set -eu
out="${1:-${AGENTPLANE_PRODUCTS_DIR:-.}}"
echo hi > "$out/out.txt"
"""

VM_NIX = """{ ... }: {
  # benchmark placeholder module (lima-process backend does not boot it)
}
"""


def bundle(name):
    return {
        "apiVersion": "agentplane.socioprophet.org/v0.1",
        "kind": "Bundle",
        "metadata": {
            "name": name,
            "version": "0.1.0",
            "createdAt": "2026-02-10T00:00:00Z",
            "licensePolicy": {"allowAGPL": False},
        },
        "spec": {
            "vm": {"backendIntent": "lima-process", "modulePath": f"bundles/{name}/vm.nix"},
            "secrets": {"required": []},
            "policy": {
                "lane": "staging",
                "maxRunSeconds": 20,
                "failOnTimeout": True,
                "humanGateRequired": False,
                "policyPackRef": "policy-packs/dev/default",
                "policyPackHash": "UNSET",
            },
            "artifacts": {"outDir": f"artifacts/{name}"},
            "smoke": {"script": f"bundles/{name}/smoke.sh"},
        },
    }


def break_bundle(b, defect):
    if defect == "lane-smoke":
        b["spec"]["policy"]["lane"] = "smoke"
    elif defect == "max-run-seconds":
        b["spec"]["policy"]["maxRunSeconds"] = 99999
    elif defect == "missing-vm":
        del b["spec"]["vm"]
    elif defect == "bad-name":
        b["metadata"]["name"] = "Bad_Name." + b["metadata"]["name"]
    elif defect == "wrong-apiversion":
        b["apiVersion"] = "agentplane.socioprophet.org/v0.2"
    else:
        raise ValueError(defect)


def write(path, text, mode=0o644):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    os.chmod(path, mode)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("n", type=int)
    ap.add_argument("outdir")
    ap.add_argument("--invalid-ratio", type=float, default=0.10)
    ap.add_argument("--seed", type=int, default=20260210)
    ap.add_argument("--schema", default=DEFAULT_SCHEMA)
    ap.add_argument("--check", action="store_true", help="check verdicts with python jsonschema")
    a = ap.parse_args()
    if a.n < 1:
        ap.error("N must be >= 1")

    rng = random.Random(a.seed)
    width = max(4, len(str(a.n)))
    names = [f"bench-{i:0{width}d}" for i in range(1, a.n + 1)]
    n_bad = round(a.n * a.invalid_ratio)
    bad = sorted(rng.sample(range(a.n), n_bad))
    # Spread defects evenly over the invalid ones, in a seeded order.
    defects = [DEFECTS[i % len(DEFECTS)] for i in range(n_bad)]
    rng.shuffle(defects)
    defect_of = dict(zip(bad, defects))

    root = os.path.abspath(a.outdir)
    bdir = os.path.join(root, "bundles")
    if os.path.isdir(bdir):
        shutil.rmtree(bdir)
    os.makedirs(bdir)
    manifest = []
    for i, name in enumerate(names):
        d = os.path.join(bdir, name)
        os.mkdir(d)
        b = bundle(name)
        defect = defect_of.get(i)
        if defect:
            break_bundle(b, defect)
        write(os.path.join(d, "bundle.json"), json.dumps(b, indent=2) + "\n")
        write(os.path.join(d, "smoke.sh"), SMOKE, 0o755)
        write(os.path.join(d, "vm.nix"), VM_NIX)
        manifest.append({"name": name, "path": f"bundles/{name}/bundle.json",
                         "valid": defect is None, "defect": defect})
    write(os.path.join(root, "bundles.manifest.json"),
          json.dumps({"n": a.n, "invalid": n_bad, "seed": a.seed, "bundles": manifest}, indent=1) + "\n")
    print(f"gen-bundles: {a.n} bundles ({n_bad} invalid) in {bdir}", file=sys.stderr)

    if a.check:
        try:
            import jsonschema
        except ImportError:
            print("gen-bundles: --check needs python jsonschema (in the bench venv)", file=sys.stderr)
            return 2
        schema = json.load(open(a.schema))
        v = jsonschema.Draft202012Validator(schema)
        wrong = 0
        for m in manifest:
            ok = v.is_valid(json.load(open(os.path.join(root, m["path"]))))
            if ok != m["valid"]:
                wrong += 1
                print(f"gen-bundles: verdict mismatch for {m['name']} ({m['defect']})", file=sys.stderr)
        if wrong:
            return 1
        print(f"gen-bundles: --check ok: every verdict matches {a.schema}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
