"""Offline runner (not part of the app): the laptop's rounds with a fourth, deeper round (the best-voted one to three
individuals on 5 to 12 photos each) beside ``policy_offline.py``'s schedules, chosen per held-out fold on the other
three folds of both sets under a mean pair budget, exactly as ``policy_offline.py choose`` chooses.

    python deeper_rounds_offline.py 16 > cpu-rounds-deeper.json    # after policy_offline.py extract for both sets
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import policy_offline

FOURTH = ((1, 8), (1, 12), (2, 6), (2, 8), (2, 12), (3, 5), (3, 8))
DEEPER = {f"2x2, 4x2, 6x3, {a}x{b}": (*policy_offline.CPU_ROUNDS, (a, b)) for a, b in FOURTH}
DEEPER["2x2, 4x3, 6x4, 2x8"] = ((2, 2), (4, 3), (6, 4), (2, 8))

if __name__ == "__main__":
    policy_offline.SCHEDULES = {**policy_offline.SCHEDULES, **DEEPER}
    policy_offline.PAIR_BUDGET = float(sys.argv[1])
    policy_offline.choose()
