"""Per-call cost of `Signer.sign` and `verify` (RSA-2048 and ECDSA P-256) in this tree, beside another
revision's hub/trust/signing.py, measured back to back in one process: each round times every variant in
turn, and the figures are the medians over the rounds (the machine is shared and noisy).

    .venv/bin/python tests/signing_microbench.py [--before HEAD] [--rounds 9] [--calls 200]

The document is the canonical envelope's business document (a licence authentication request) and is
verified in place, inside its envelope, as intake verifies it; "receipt" is the hub's signed receipt
(before: built as a tree and signed; after: hub/trust/receipts.py). "key only" is the key operation alone
(the SignatureValue over SignedInfo): what no XML code path can go below. Not a test: speed is measured,
not asserted.
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lxml import etree

sys.path.insert(0, str(Path(__file__).parent))
import sigtools as st  # noqa: E402
from hub.trust import signing  # noqa: E402
from hub.trust.receipts import build_receipt  # noqa: E402
from hub.xml.safe import to_bytes  # noqa: E402
from hub.xml.schemas import ENVELOPE_NS  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def load_revision(revision: str):
    """hub/trust/signing.py as it was at `revision`, imported as a module of its own."""
    source = subprocess.run(["git", "show", f"{revision}:hub/trust/signing.py"], cwd=ROOT, check=True,
                            capture_output=True).stdout
    path = Path(tempfile.mkdtemp()) / "signing_before.py"
    path.write_bytes(source)
    spec = importlib.util.spec_from_file_location("signing_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def receipt_as_a_tree(signer, *, message_id: str, sender: str, digest: str, received_at: dt.datetime) -> bytes:
    """The receipt as hub/trust/receipts.py built it before it was written as bytes: a tree, signed."""
    e = lambda tag: f"{{{ENVELOPE_NS}}}{tag}"  # noqa: E731
    root = etree.Element(e("Receipt"), nsmap={"env": ENVELOPE_NS})
    etree.SubElement(root, e("MessageId")).text = message_id
    etree.SubElement(root, e("Sender")).text = sender
    etree.SubElement(root, e("Digest"), algorithm="sha256").text = digest
    etree.SubElement(root, e("ReceivedAt")).text = received_at.isoformat(timespec="milliseconds")
    return to_bytes(signer.sign(root))


def per_call(function, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        function()
    return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="HEAD", help="the revision to compare with (default HEAD)")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args()
    modules = {"before": load_revision(args.before), "after": signing}
    ca = st.make_ca("bench CA")
    keys = {algorithm: st.issue(ca, "hub", algorithm=algorithm) for algorithm in ("rsa-sha256", "ecdsa-sha256")}
    unsigned = st.business(st.licence_request())[1]
    receipt = dict(message_id="REGISTRY-LIC-2026-000001", sender="REGISTRY", digest="ab" * 32,
                   received_at=dt.datetime.now(dt.timezone.utc))
    cases, sizes = {}, {}
    for algorithm, (key, certificate) in keys.items():
        for name, module in modules.items():
            signer = module.Signer(key, certificate)
            envelope = st.with_document(st.licence_request(), signer.sign(unsigned))
            document = st.business(envelope)[1]
            module.verify(document, certificate, signer_name="hub")
            sizes[algorithm] = len(etree.tostring(document))
            cases[(algorithm, "sign", name)] = lambda s=signer: s.sign(unsigned)
            cases[(algorithm, "verify", name)] = lambda m=module, d=document, c=certificate: m.verify(
                d, c, signer_name="hub")
            make_receipt = receipt_as_a_tree if name == "before" else build_receipt
            cases[(algorithm, "receipt", name)] = lambda s=signer, make=make_receipt: make(s, **receipt)
        key = signer.key
        data = etree.tostring(document.find(f"{{{signing.DS_NS}}}Signature/{{{signing.DS_NS}}}SignedInfo"),
                              method="c14n", exclusive=True)
        parts = signing.check_structure(document, "hub")
        cases[(algorithm, "sign", "key only")] = lambda s=signer, d=data: s.sign_bytes(d)
        cases[(algorithm, "verify", "key only")] = lambda p=parts, c=certificate, d=data: signing.made_with(p, c, d)
    print(f"document: the business document of a canonical envelope, {len(etree.tostring(unsigned))} bytes unsigned, "
          f"{', '.join(f'{n} signed {a}' for a, n in sizes.items())}")
    timings = {case: [] for case in cases}
    for _ in range(args.rounds):
        for case, function in cases.items():
            timings[case].append(per_call(function, args.calls))
    print(f"medians of {args.rounds} rounds of {args.calls} calls, µs per call")
    print(f"{'':14}{'':8}{'before':>10}{'after':>10}{'ratio':>8}{'key only':>10}")
    for algorithm in keys:
        for operation in ("sign", "verify", "receipt"):
            before = statistics.median(timings[(algorithm, operation, "before")])
            after = statistics.median(timings[(algorithm, operation, "after")])
            floor = timings.get((algorithm, operation, "key only"))
            print(f"{algorithm:14}{operation:8}{before:10.0f}{after:10.0f}{before / after:7.1f}x"
                  + (f"{statistics.median(floor):10.0f}" if floor else ""))


if __name__ == "__main__":
    main()
