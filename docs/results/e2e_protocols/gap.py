"""E2E's two scoring protocols on the same predictions (docs/paper_readings.md, reading 4).

A deterministic rule-based realiser writes one sentence per meaning representation; its
output is scored per test row (each row's own reference; appendix B.3's 4,693 rows) and per MR
(best of the MR's references), with the project's ``rouge_l`` metric:

    PYTHONPATH=. python docs/results/e2e_protocols/gap.py $PARADE_DATA_DIR/e2e/test.jsonl
"""

import json
import re
import sys

from datamodules.metrics import score

rows = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8") if line.strip()]


def realise(mr: str) -> str:
    """One sentence from the MR's slots (name, eatType, food, area, near, price, rating...)."""
    f = {k.strip(): v for k, v in re.findall(r"([^,\[]+)\[(.*?)\]", mr)}
    s = f"{f.get('name', 'It')} is a {f.get('eatType', 'place')}"
    if "food" in f:
        s += f" serving {f['food']} food"
    if "area" in f:
        s += f" in the {f['area']}"
    if "near" in f:
        s += f" near {f['near']}"
    s += "."
    if "priceRange" in f:
        s += f" Its price range is {f['priceRange']}."
    if "customer rating" in f:
        s += f" It has a {f['customer rating']} customer rating."
    if "familyFriendly" in f:
        s += " It is" + ("" if f["familyFriendly"] == "yes" else " not") + " family friendly."
    return s


groups = {}
for r in rows:
    groups.setdefault(r["meaning_representation"], []).append(r["human_reference"])
per_row = score("rouge_l", [realise(r["meaning_representation"]) for r in rows],
                [{"references": [r["human_reference"]]} for r in rows])
per_mr = score("rouge_l", [realise(m) for m in groups],
               [{"references": refs} for refs in groups.values()])
print(f"rows {len(rows)} MRs {len(groups)}  per_row {100 * per_row.value:.1f}  "
      f"per_mr {100 * per_mr.value:.1f}")
