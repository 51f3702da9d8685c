"""Labelled cases for the math grader, part 2 of 2: the UNSEEN table (issue 15, item 6).

Written by hand, with ``math_cases_tune.py``, before any change to the grader for issue 15, and
committed before that change. Not looked at while the grader was tuned: it is scored once, at the end,
and that score is the one reported (``perf/math_verifier_bench.py``, dataset ``unseen``). Same row
format and conventions as ``math_cases_tune.py`` (read its docstring); other items, values and
phrasings on purpose.
"""

from __future__ import annotations

# --- self-correction and hedge responses -------------------------------------------------------------

SC_OOPS = (r"Multiplying, the product is $\boxed{56}$. Oops, I misread the second factor: it is 9, not 8. "
           r"So the product is $7 \times 9 = \boxed{63}$.")
SC_RECALC = ("The remaining amount is $\\boxed{\\$35}$.\n\nLet me recalculate to be sure: $50 - 12 - 8 = 30$. "
             "I previously subtracted wrongly; the remaining amount is $\\boxed{\\$30}$.")
SC_VERIFY = (r"Solving, $x = \boxed{4}$. Let me verify by substituting: $2(4) + 3 = 11 \ne 13$. That is not "
             r"right. Redoing it: $2x = 10$, so $x = \boxed{5}$.")
SC_WAIT_FRAC = (r"Hence the ratio is $\boxed{\frac{2}{3}}$. Wait, I swapped numerator and denominator. The "
                r"correct ratio is $\boxed{\frac{3}{2}}$.")
SC_RECONSIDER = (r"There are $\boxed{24}$ arrangements. Hmm, let me reconsider: the two identical letters make "
                 r"each arrangement counted twice, so there are $\boxed{12}$ arrangements.")
SC_NOPE = r"$\boxed{-1}$ — no wait, squaring loses the sign; the answer is $\boxed{1}$."
SC_ERROR_FOUND = ("**Answer:** $\\boxed{3\\sqrt{2}}$\n\nI found an error in step 2 ($\\sqrt{18}$ was computed "
                  "from $9 \\cdot 3$). Fixing it: $\\sqrt{27} = \\boxed{3\\sqrt{3}}$.")
SC_SAME_TWICE = r"So the area is \boxed{48}. Double-checking with the other formula also gives \boxed{48}."

H_OR_MAYBE = r"The value is $\boxed{9}$, or maybe $\boxed{10}$."
H_DEPENDS = (r"If the coin is fair, the probability is $\boxed{\frac{1}{2}}$; if it is biased, it is "
             r"$\boxed{\frac{2}{3}}$.")
H_TWO_ANSWERS = r"Two answers are possible: $\boxed{4}$ and $\boxed{-4}$."
H_NOT_SURE = r"I am not sure whether it is \boxed{30} or \boxed{32}."
H_LIST = r"$\boxed{2}, \boxed{3}, \boxed{5}, \boxed{7}$"
H_ALSO = r"The answer is $\boxed{11}$. It could also be $\boxed{13}$."
H_WAIT_BOTH = r"\boxed{8}. Wait, let me recheck... it's either \boxed{8} or \boxed{9}."

GSM_PENS = ("Each pack has 12 pens and she buys 5 packs, so 12 * 5 = 60 pens.\n"
            "She gives away 15, so 60 - 15 = 45 pens.\n#### 45")
GSM_SPEED = "Distance = speed x time = 60 x 2.5 = 150 miles.\nThe answer is 150."
GSM_PERCENT = "20% of 80 is 0.2 * 80 = 16, so the price is 80 - 16 = $64.\n#### 64"
GSM_FRACTION = "A third of 27 is 27 / 3 = 9 students.\nSo 27 - 9 = 18 students stay.\n#### 18"

CASES: list[tuple] = [
    # --- a coefficient and a letter ---
    ("5y^2", "5y^3", False, "coef_letter"),
    ("5y^2", "5y^2", True, "coef_letter"),
    ("5y^2", "5", False, "coef_letter"),
    ("5y^2", "5y", False, "coef_letter"),
    ("8b", "8", False, "coef_letter"),
    ("8b", "8c", False, "coef_letter"),
    ("8b", r"\boxed{8b}", True, "coef_letter"),
    ("-2t^3", "-2t^2", False, "coef_letter"),
    ("-2t^3", r"-2t^{3}", True, "coef_letter"),
    ("11m", "11", False, "coef_letter"),
    ("11m", "11m", True, "coef_letter"),
    ("3", "3a", False, "coef_letter"),
    ("20", "20x", False, "coef_letter"),
    ("4i", "4", False, "coef_letter"),
    ("4i", r"\boxed{4i}", True, "coef_letter"),
    ("2x^2", "2x^2y", False, "coef_letter"),
    ("6p^2", "6p^{3}", False, "coef_letter"),
    ("6p^2", r"6p^{2}", True, "coef_letter"),
    (r"\frac{1}{3}y^2", r"\frac{y^2}{3}", True, "coef_letter"),
    (r"\frac{1}{3}y^2", r"\frac{y^3}{3}", False, "coef_letter"),
    ("9z", "9z^2", False, "coef_letter"),
    # --- units ---
    (r"9 \text{ m}^2", r"9 \text{ m}^3", False, "unit_power"),
    (r"9 \text{ m}^2", "9", True, "unit_power"),
    (r"9 \text{ m}^2", "9 square meters", True, "unit_power"),
    (r"50 \text{ cm}^3", "50 cm^2", False, "unit_power"),
    (r"50 \text{ cm}^3", "50", True, "unit_power"),
    (r"50 \text{ cm}^3", "50 cubic centimeters", True, "unit_power"),
    ("18 ft^3", "18 ft^2", False, "unit_power"),
    ("18 ft^3", "18", True, "unit_power"),
    ("100", r"100 \text{ square inches}", True, "unit_power"),
    ("100", r"100 \text{ in}^2", True, "unit_power"),
    ("36", r"36\text{ units}^2", True, "unit_power"),
    ("2.5", "2.5 hours", True, "unit_power"),
    ("2.5", "2.5 km", True, "unit_power"),
    ("60", "60 seconds", True, "unit_power"),
    (r"4 \text{ km}^2", r"4 \text{ km}", False, "unit_power"),
    # --- scientific notation ---
    ("560000", r"5.6 \times 10^5", True, "sci"),
    ("560000", r"5.6 \times 10^4", False, "sci"),
    (r"5.6 \times 10^5", "560,000", True, "sci"),
    (r"5.6 \times 10^5", "5.6e5", True, "sci"),
    (r"5.6 \times 10^5", "5.6e6", False, "sci"),
    (r"9.1 \times 10^{-3}", "0.0091", True, "sci"),
    (r"9.1 \times 10^{-3}", "0.091", False, "sci"),
    (r"9.1 \times 10^{-3}", "9.1e-3", True, "sci"),
    ("0.0004", r"4 \times 10^{-4}", True, "sci"),
    ("0.0004", r"4 \cdot 10^{-4}", True, "sci"),
    ("0.0004", r"4 \times 10^{-5}", False, "sci"),
    (r"3 \times 10^8", "300000000", True, "sci"),
    (r"3 \times 10^8", "300,000,000", True, "sci"),
    (r"3 \times 10^8", "30000000", False, "sci"),
    (r"1.05 \times 10^{2}", "105", True, "sci"),
    (r"1.05 \times 10^{2}", "10.5", False, "sci"),
    ("7200", r"The answer is $7.2 \times 10^3$.", True, "sci"),
    ("7200", r"The answer is $7.2 \times 10^2$.", False, "sci"),
    ("0.025", "2.5E-2", True, "sci"),
    ("0.025", "2.5E-3", False, "sci"),
    # --- decimal / fraction coefficients ---
    ("0.75x", r"\frac{3x}{4}", True, "dec_coef"),
    ("0.75x", r"\frac{3}{4}x", True, "dec_coef"),
    ("0.75x", r"\frac{4x}{3}", False, "dec_coef"),
    (r"\frac{y}{4}", "0.25y", True, "dec_coef"),
    (r"\frac{y}{4}", "0.4y", False, "dec_coef"),
    ("1.5x - 2", r"\frac{3x-4}{2}", True, "dec_coef"),
    ("1.5x - 2", r"\frac{3x-2}{2}", False, "dec_coef"),
    (r"\frac{2}{5}m", "0.4m", True, "dec_coef"),
    (r"\frac{2}{5}m", "0.25m", False, "dec_coef"),
    (r"\frac{x}{6}", "0.17x", False, "dec_coef"),
    ("y = 2.5x - 1", r"y = \frac{5}{2}x - 1", True, "dec_coef"),
    ("y = 2.5x - 1", r"y = \frac{2}{5}x - 1", False, "dec_coef"),
    ("0.5x^2 + 0.5x", r"\frac{x(x+1)}{2}", True, "dec_coef"),
    ("0.5x^2 + 0.5x", r"\frac{x(x-1)}{2}", False, "dec_coef"),
    ("0.125k", r"\frac{k}{8}", True, "dec_coef"),
    # --- trigonometric identities ---
    (r"\cos^2\theta", r"1 - \sin^2\theta", True, "trig"),
    (r"\cos^2\theta", r"\sin^2\theta - 1", False, "trig"),
    (r"\sin 2\alpha", r"2\sin\alpha\cos\alpha", True, "trig"),
    (r"\sin 2\alpha", r"2\cos\alpha", False, "trig"),
    (r"\cos 2x", r"\cos^2 x - \sin^2 x", True, "trig"),
    (r"\cos 2x", r"1 - 2\sin^2 x", True, "trig"),
    (r"\cos 2x", r"1 - 2\cos^2 x", False, "trig"),
    (r"\sec^2 t", r"1 + \tan^2 t", True, "trig"),
    (r"\sec^2 t", r"1 - \tan^2 t", False, "trig"),
    (r"\cot\theta", r"\frac{\cos\theta}{\sin\theta}", True, "trig"),
    (r"\cot\theta", r"\frac{\sin\theta}{\cos\theta}", False, "trig"),
    (r"\sin(x - y)", r"\sin x\cos y - \cos x\sin y", True, "trig"),
    (r"\sin(x - y)", r"\sin x\cos y + \cos x\sin y", False, "trig"),
    (r"\tan 2x", r"\frac{2\tan x}{1 - \tan^2 x}", True, "trig"),
    (r"\tan 2x", r"2\tan x", False, "trig"),
    (r"4\sin x\cos x", r"2\sin 2x", True, "trig"),
    (r"4\sin x\cos x", r"\sin 4x", False, "trig"),
    (r"\sin^2 x\cos^2 x", r"\frac{\sin^2 2x}{4}", True, "trig"),
    (r"1", r"\cos^2\theta + \sin^2\theta", True, "trig"),
    (r"\cos x", r"\cos(-x)", True, "trig"),
    (r"\sin x", r"\sin(-x)", False, "trig"),
    (r"\cos 3x", r"4\cos^3 x - 3\cos x", True, "trig"),
    (r"\cos 3x", r"3\cos x - 4\cos^3 x", False, "trig"),
    # --- agree at some points only ---
    ("t", "|t|", False, "numeric_trap"),
    ("2x", r"x + |x|", False, "numeric_trap"),
    ("x^4", "(x^2)^2", True, "numeric_trap"),
    ("x", r"x + \sin(2\pi x)", False, "numeric_trap"),
    ("x^2", "x^2 + x(x-1)(x+1)", False, "numeric_trap"),
    ("0", r"\cos(\pi x + \frac{\pi}{2})", False, "numeric_trap"),
    (r"\frac{x^2-4}{x+2}", "x-2", True, "numeric_trap"),
    ("2^x", "x^2", False, "numeric_trap"),
    # --- self-correction ---
    ("63", SC_OOPS, True, "self_correct"),
    ("56", SC_OOPS, False, "self_correct"),
    ("30", SC_RECALC, True, "self_correct"),
    ("35", SC_RECALC, False, "self_correct"),
    ("5", SC_VERIFY, True, "self_correct"),
    ("4", SC_VERIFY, False, "self_correct"),
    (r"\frac{3}{2}", SC_WAIT_FRAC, True, "self_correct"),
    (r"\frac{2}{3}", SC_WAIT_FRAC, False, "self_correct"),
    ("12", SC_RECONSIDER, True, "self_correct"),
    ("24", SC_RECONSIDER, False, "self_correct"),
    ("1", SC_NOPE, True, "self_correct"),
    ("-1", SC_NOPE, False, "self_correct"),
    (r"3\sqrt{3}", SC_ERROR_FOUND, True, "self_correct"),
    (r"3\sqrt{2}", SC_ERROR_FOUND, False, "self_correct"),
    ("48", SC_SAME_TWICE, True, "self_correct"),
    # --- hedges ---
    ("9", H_OR_MAYBE, False, "hedge"),
    ("10", H_OR_MAYBE, False, "hedge"),
    (r"\frac{1}{2}", H_DEPENDS, False, "hedge"),
    (r"\frac{2}{3}", H_DEPENDS, False, "hedge"),
    ("4", H_TWO_ANSWERS, False, "hedge"),
    ("-4", H_TWO_ANSWERS, False, "hedge"),
    ("30", H_NOT_SURE, False, "hedge"),
    ("32", H_NOT_SURE, False, "hedge"),
    ("5", H_LIST, False, "hedge"),
    ("11", H_ALSO, False, "hedge"),
    ("13", H_ALSO, False, "hedge"),
    ("8", H_WAIT_BOTH, False, "hedge"),
    ("9", H_WAIT_BOTH, False, "hedge"),
    ("6", "6 or 7", False, "hedge"),
    ("6", "either 6 or 7", False, "hedge"),
    # --- an expression the question asks for ---
    ("9", r"\boxed{p + q = 9}", True, "expr_eq", r"Given $p = 4$ and $q = 5$, what is $p + q$?"),
    ("9", r"\boxed{p + q = 8}", False, "expr_eq", r"Given $p = 4$ and $q = 5$, what is $p + q$?"),
    ("20", r"Therefore $\boxed{x^2 + y^2 = 20}$.", True, "expr_eq",
     r"If $x + y = 6$ and $xy = 8$, find $x^2 + y^2$."),
    ("20", r"Therefore $\boxed{x^2 - y^2 = 20}$.", False, "expr_eq",
     r"If $x + y = 6$ and $xy = 8$, find $x^2 + y^2$."),
    ("7", r"$\boxed{a + b = 7}$", True, "expr_eq", r"The roots of $x^2 - 7x + 12$ are $a$ and $b$. What is $a + b$?"),
    ("12", r"$\boxed{a + b = 12}$", False, "expr_eq",
     r"The roots of $x^2 - 7x + 12$ are $a$ and $b$. What is $ab$?"),
    ("3", r"\boxed{g(1) = 3}", True, "expr_eq", r"If $g(x) = 2x + 1$, evaluate $g(1)$."),
    ("3", r"\boxed{g(0) = 3}", False, "expr_eq", r"If $g(x) = 2x + 1$, evaluate $g(1)$."),
    ("14", r"So we get \boxed{2a + b = 14}.", True, "expr_eq", r"Determine the value of $2a + b$."),
    ("14", r"So we get \boxed{a + 2b = 14}.", False, "expr_eq", r"Determine the value of $2a + b$."),
    ("6", r"\boxed{x + y + z = 6}", False, "expr_eq", r"If $x + y + z = 6$ and $y = z = 0$, what is $x$?"),
    # --- text golds ---
    (r"\text{Friday}", r"\boxed{\text{Thursday}}", False, "text_gold"),
    (r"\text{Friday}", r"\boxed{\text{Friday}}", True, "text_gold"),
    (r"\text{Friday}", "Friday", True, "text_gold"),
    (r"\text{Friday}", r"\boxed{6}", False, "text_gold"),
    ("Brandon", r"The winner is \boxed{\text{Brandon}}.", True, "text_gold"),
    ("Brandon", r"The winner is \boxed{\text{Sophia}}.", False, "text_gold"),
    ("Brandon", "BRANDON", True, "text_gold"),
    (r"\text{No}", r"\boxed{\text{no}}", True, "text_gold"),
    (r"\text{No}", r"\boxed{\text{yes}}", False, "text_gold"),
    (r"\text{circle}", r"\boxed{\text{circle}}", True, "text_gold"),
    (r"\text{circle}", r"\boxed{\text{ellipse}}", False, "text_gold"),
    (r"\text{north}", "South", False, "text_gold"),
    (r"\text{Ravi}", "It is not possible to tell.", False, "text_gold"),
    (r"\text{Ravi}", r"\boxed{12}", False, "text_gold"),
    # --- GSM8K-style responses ---
    ("45", GSM_PENS, True, "gsm"),
    ("60", GSM_PENS, False, "gsm"),
    ("150", GSM_SPEED, True, "gsm"),
    ("120", GSM_SPEED, False, "gsm"),
    ("64", GSM_PERCENT, True, "gsm"),
    ("16", GSM_PERCENT, False, "gsm"),
    ("18", GSM_FRACTION, True, "gsm"),
    ("9", GSM_FRACTION, False, "gsm"),
    ("5", "#### 5.0", True, "gsm"),
    ("5", "#### 0.5", False, "gsm"),
    ("2400", "#### 2,400", True, "gsm"),
    ("2400", "#### 2,401", False, "gsm"),
    ("12", "So she needs 12 more stickers.", True, "gsm"),
    ("12", "So she needs 21 more stickers.", False, "gsm"),
    ("8", "The final answer is 8.", True, "gsm"),
    ("8", "The final answer is 80.", False, "gsm"),
    ("99", "Answer: $99", True, "gsm"),
    ("99", "Answer: $9.9", False, "gsm"),
    ("0.75", "The fraction is 3/4.", True, "gsm"),
    ("0.75", "The fraction is 4/3.", False, "gsm"),
    ("15", "x = 15", True, "gsm"),
    ("15", "x = 51", False, "gsm"),
    ("1000", "#### 1000.00", True, "gsm"),
    ("1000", "#### 100.00", False, "gsm"),
    # --- MATH-style numbers ---
    (r"\frac{\sqrt{2}}{2}", r"\boxed{\frac{1}{\sqrt{2}}}", True, "math_num"),
    (r"\frac{\sqrt{2}}{2}", r"\boxed{\frac{\sqrt{3}}{2}}", False, "math_num"),
    (r"\frac{\sqrt{2}}{2}", r"\boxed{0.707}", False, "math_num"),
    (r"3\sqrt{5}", r"\sqrt{45}", True, "math_num"),
    (r"3\sqrt{5}", r"\sqrt{15}", False, "math_num"),
    (r"3\sqrt{5}", r"5\sqrt{3}", False, "math_num"),
    (r"\frac{7}{8}", "0.875", True, "math_num"),
    (r"\frac{7}{8}", "0.87", False, "math_num"),
    (r"\frac{7}{8}", r"\frac{8}{7}", False, "math_num"),
    (r"\dfrac{11}{3}", r"3\frac{2}{3}", True, "math_num"),
    (r"\dfrac{11}{3}", r"3\frac{1}{3}", False, "math_num"),
    ("-6", r"\boxed{-6}", True, "math_num"),
    ("-6", r"\boxed{6}", False, "math_num"),
    ("-6", r"\boxed{-6.5}", False, "math_num"),
    (r"2\pi", r"\boxed{2\pi}", True, "math_num"),
    (r"2\pi", r"\boxed{\pi}", False, "math_num"),
    (r"2\pi", "6.28", False, "math_num"),
    (r"\frac{4\pi}{3}", r"\frac{4}{3}\pi", True, "math_num"),
    (r"\frac{4\pi}{3}", r"\frac{3\pi}{4}", False, "math_num"),
    (r"25\%", "25", True, "math_num"),
    (r"25\%", "20", False, "math_num"),
    ("3-2i", "-2i+3", True, "math_num"),
    ("3-2i", "3+2i", False, "math_num"),
    ("1001", r"1,\!001", True, "math_num"),
    ("1001", "1,010", False, "math_num"),
    ("120", r"5!", True, "math_num"),
    ("120", r"4!", False, "math_num"),
    ("10", r"\binom{5}{2}", True, "math_num"),
    ("10", r"\binom{5}{3}", True, "math_num"),
    ("10", r"\binom{6}{2}", False, "math_num"),
    ("\\frac{1}{8}", "2^{-3}", True, "math_num"),
    ("\\frac{1}{8}", "2^{3}", False, "math_num"),
    ("0", r"\boxed{0}", True, "math_num"),
    ("0", r"\boxed{O}", False, "math_num"),
    # --- MATH-style expressions ---
    ("x^2 - 9", "(x+3)(x-3)", True, "math_expr"),
    ("x^2 - 9", "(x+3)^2", False, "math_expr"),
    ("2(x+3)", "2x+6", True, "math_expr"),
    ("2(x+3)", "2x+3", False, "math_expr"),
    (r"\frac{x+1}{x}", r"1 + \frac{1}{x}", True, "math_expr"),
    (r"\frac{x+1}{x}", r"x + \frac{1}{x}", False, "math_expr"),
    ("a^2b", "ab^2", False, "math_expr"),
    ("a^2b", "b a^2", True, "math_expr"),
    ("3n-5", "-5+3n", True, "math_expr"),
    ("3n-5", "5-3n", False, "math_expr"),
    (r"y = 3x - 7", r"y = -7 + 3x", True, "math_expr"),
    (r"y = 3x - 7", r"y = 3x + 7", False, "math_expr"),
    (r"\sqrt{2x}", r"\sqrt{2}\sqrt{x}", True, "math_expr"),
    (r"\sqrt{2x}", r"2\sqrt{x}", False, "math_expr"),
    (r"(x-1)^3", r"x^3 - 3x^2 + 3x - 1", True, "math_expr"),
    (r"(x-1)^3", r"x^3 - 1", False, "math_expr"),
    # --- MATH-style structures ---
    ("(0, 4)", r"\left(0,4\right)", True, "math_struct"),
    ("(0, 4)", "(4, 0)", False, "math_struct"),
    (r"(1, \frac{1}{2})", "(1, 0.5)", True, "math_struct"),
    (r"(1, \frac{1}{2})", "(1, 2)", False, "math_struct"),
    ("(-3, 3)", "(-3,3)", True, "math_struct"),
    ("(-3, 3)", "[-3,3]", False, "math_struct"),
    (r"[0, \infty)", r"[0,\infty)", True, "math_struct"),
    (r"[0, \infty)", r"(0,\infty)", False, "math_struct"),
    ("2, -5", "-5, 2", True, "math_struct"),
    ("2, -5", "2, 5", False, "math_struct"),
    (r"\text{(A)}", r"\boxed{\text{(A)}}", True, "math_struct"),
    (r"\text{(A)}", r"\boxed{\text{(C)}}", False, "math_struct"),
    (r"\begin{pmatrix} 2 & 0 \\ 0 & 2 \end{pmatrix}", r"\begin{pmatrix} 2 & 0 \\ 0 & 2 \end{pmatrix}", True,
     "math_struct"),
    (r"\begin{pmatrix} 2 & 0 \\ 0 & 2 \end{pmatrix}", r"\begin{pmatrix} 2 & 0 \\ 0 & -2 \end{pmatrix}", False,
     "math_struct"),
    (r"\{-1, 0, 1\}", r"\{1, 0, -1\}", True, "math_struct"),
    (r"\{-1, 0, 1\}", r"\{-1, 1\}", False, "math_struct"),
]


def rows() -> list[tuple[str, str, bool, str, str]]:
    """Every row as ``(gold, response, expected, tag, question)`` (question ``""`` when not needed)."""
    return [tuple(r) if len(r) == 5 else (*r, "") for r in CASES]  # type: ignore[misc]
