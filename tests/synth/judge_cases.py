"""Judge outputs and the score a robust parser must read from them (None: unparseable), on a 0-10 scale.
Written before the parser. TUNE is what the parser was developed against; UNSEEN was not looked at while
tuning and is scored once (tests/synth/test_judge.py reports both)."""

TUNE = [
    ("Score: 8", 8),
    ("score: 7/10", 7),
    ("The response is correct and clear.\n\nScore: 9", 9),
    ("**Score:** 6", 6),
    ("Rating: [[7]]", 7),
    ("[[3]]", 3),
    ('{"score": 5, "reason": "partially right"}', 5),
    ("I would give this a 4 out of 10.", 4),
    ("Final score: 10", 10),
    ("Score: 7.5", 7.5),
    ("8/10", 8),
    ("7", 7),
    ("Score: 3\nOn reflection the method is fine. Final score: 6", 6),
    ("The answer 42 is wrong because 6*7=42 was not asked. Score: 2", 2),
    ("\\boxed{9}", 9),
    ("I cannot evaluate this.", None),
    ("", None),
    ("Score: fifteen", None),
    ("Score: 15", None),
    ("The response uses 3 steps and 12 numbers.", None),
    ("Score: -2", None),
    ("Grade: 8", 8),
    ("score = 4", 4),
    ("Score: 4/5", 8),
]

UNSEEN = [
    ("Overall, a solid answer. SCORE: 8", 8),
    ("Evaluation: The reasoning has a gap.\nRating: 5/10", 5),
    ("score - 6", 6),
    ('```json\n{"score": 9}\n```', 9),
    ("I'd rate it 3/10 since the final answer is off by 2.", 3),
    ("Score: N/A", None),
    ("Rating: [[10]]", 10),
    ("The student wrote 12 and 15; both wrong.", None),
    ("Score: 0", 0),
    ("Score: 7 out of 10", 7),
    ("Final Score: 2.", 2),
    ("Score:\n\n6", 6),
]
