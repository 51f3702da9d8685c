"""Labelled cases for the math grader, part 1 of 2: the TUNING table (issue 15, item 6).

Written by hand before any change to the grader for issue 15, together with its unseen twin
``math_cases_unseen.py`` (committed in the same commit, before the grader changed; the history is the
evidence). This part may be looked at while the grader is tuned; the unseen part is scored once at the
end. Labels are the judgement of a careful human grader of MATH / GSM8K answers, never a tool's output.

Rows: ``(gold, response, expected_correct, tag)`` or ``(gold, response, expected_correct, tag,
question)`` when the row needs the question (a ``x + y = 17`` answer to "what is x + y?"). Every gold
here is a valid answer, so no row may end in a grader error.

Conventions, on top of ``math_cases.py``'s:

* units: ignored when only one side writes them (``12 cm^2`` = ``12``); when both do, they must agree
  (``5 m^2`` != ``5 m^3``; ``square feet`` = ``ft^2``). A letter after a number that is not a unit is a
  variable: ``3x^2`` != ``3x^3``, ``2x`` != ``2``, ``2i`` != ``2``;
* scientific notation is its plain value (``3.2 \\times 10^4`` = ``32000`` = ``3.2e4``);
* a decimal coefficient equals the same fraction (``0.5x`` = ``x/2``), a rounded one does not
  (``0.33x`` != ``x/3``);
* trigonometric identities are equal (``2\\sin x\\cos x`` = ``\\sin 2x``); expressions that agree at some
  points only are not (``x`` != ``|x|``, ``x`` != ``x + \\sin(\\pi x)``);
* ``\\sin 2x`` means sin(2x); ``\\sin x^2`` means sin(x^2);
* self-correction: a response that boxes one answer, says it rechecked / made a mistake, and boxes
  another is graded on the last box; two boxes offered as alternatives ("or", "either", "might also
  be", cases) are a hedge: wrong whatever the gold;
* ``x + y = 17`` answers a question that asks for ``x + y`` (gold ``17``), not one that asks for ``x``;
* a text gold (a name, a day, yes/no) is compared as words, case-insensitively; a wrong answer to it
  is incorrect, not a grader error.
"""

from __future__ import annotations

# --- self-correction and hedge responses -------------------------------------------------------------

SC_RECHECK = (r"First I get $3 \times 4 = 12$, so the answer is $\boxed{12}$. Wait, let me recheck: the problem "
              r"asks for $3 \times 5$, which is $\boxed{15}$.")
SC_MISTAKE = ("The perimeter is $\\boxed{20}$.\n\nHmm, I made a mistake: the long side is 7, not 6. So the "
              "perimeter is $2(7+4) = \\boxed{22}$.")
SC_DOUBLE = ("$\\boxed{\\frac{1}{4}}$\n\nLet me double-check this. Out of 36 outcomes, 6 give a sum of 7, so "
             "the probability is $\\boxed{\\frac{1}{6}}$.")
SC_ACTUALLY = (r"Answer: $\boxed{8}$. Actually, I miscounted; re-checking the list gives 9 numbers. "
               r"Final answer: $\boxed{9}$.")
SC_EXTRANEOUS = (r"So $x = \boxed{-3}$. On second thought, $x=-3$ makes the denominator zero, so it is "
                 r"extraneous; the only valid solution is $x = \boxed{2}$.")
SC_ATFIRST = (r"I got $\boxed{45}$ at first, but rechecking the arithmetic, $9 \cdot 6 = 54$, so the correct "
              r"answer is $\boxed{54}$.")
SC_CORRECTION = r"Thus the answer is \boxed{100}. Correction: we double counted the corner, so the answer is \boxed{99}."
SC_THREE = (r"The sum is \boxed{10}. Wait, that's wrong: I dropped the last term. The sum is \boxed{11}. "
            r"Let me verify once more: $1+2+3+5 = 11$. Yes, \boxed{11}.")
SC_SHORT = r"\boxed{5}. Wait, no: $2 + 4 = 6$, so \boxed{6}."
SC_SAME = r"The answer is \boxed{5}. Let me recheck: $10/2 = 5$. Yes, \boxed{5}."

H_OR = r"The answer is $\boxed{12}$ or $\boxed{15}$."
H_MIGHT = r"It could be $\boxed{3}$, but it might also be $\boxed{4}$."
H_CASES = r"If $a$ is positive the answer is $\boxed{2}$; if it is negative, $\boxed{-2}$."
H_EITHER = r"Either $\boxed{7}$ or $\boxed{8}$, depending on how the ends are counted."
H_ROW = r"\boxed{1} \quad \boxed{2} \quad \boxed{3}"
H_VALUES = r"Possible values: $\boxed{6}$ and $\boxed{9}$."
H_RECHECK_THEN_HEDGE = r"\boxed{5}. Wait, let me recheck. Maybe it is \boxed{6} or \boxed{7}."
H_ALTERNATIVELY = r"My answer is \boxed{20}. Alternatively, \boxed{21}."

GSM_EGGS = "She sells 16 - 3 - 4 = 9 eggs and earns 9 * 2 = $18.\n#### 18"
GSM_COOKIES = "There are 100 cookies and 4 friends.\nEach friend gets 100 / 4 = 25 cookies.\n#### 25"
GSM_MONEY = "He pays 3 * 2.50 = 7.50 dollars.\n#### 7.50"
GSM_TOTAL = "The total is 1,200 dollars.\n#### 1200"

CASES: list[tuple] = [
    # --- a coefficient and a letter: a variable, not a unit (the false-positive class) ---
    ("3x^2", "3x^3", False, "coef_letter"),
    ("3x^2", "3x^2", True, "coef_letter"),
    ("3x^2", r"\boxed{3x^2}", True, "coef_letter"),
    ("3x^2", "3", False, "coef_letter"),
    ("3x^2", "3x", False, "coef_letter"),
    ("3x^2", "3y^2", False, "coef_letter"),
    ("3x^2", r"3 x^{2}", True, "coef_letter"),
    ("2x", "2", False, "coef_letter"),
    ("2x", "2y", False, "coef_letter"),
    ("2x", r"x \cdot 2", True, "coef_letter"),
    ("7n", "7", False, "coef_letter"),
    ("7n", "7m", False, "coef_letter"),
    ("4a^2", "4a^3", False, "coef_letter"),
    ("4a^2", "(2a)^2", True, "coef_letter"),
    ("10t", "10", False, "coef_letter"),
    ("2r^2", "2r^4", False, "coef_letter"),
    ("9k", "9", False, "coef_letter"),
    ("100x^2", "100x^3", False, "coef_letter"),
    ("-3x^2", "-3x^3", False, "coef_letter"),
    ("3x^2+1", "3x^3+1", False, "coef_letter"),
    ("4n^2", "4n^3", False, "coef_letter"),
    ("5", "5x", False, "coef_letter"),
    ("12", "12n", False, "coef_letter"),
    ("2i", "2", False, "coef_letter"),
    ("2i", "2i", True, "coef_letter"),
    ("6x", "6", False, "coef_letter"),
    ("6x", r"\boxed{6x}", True, "coef_letter"),
    (r"\frac{3}{2}x^2", "1.5x^2", True, "coef_letter"),
    (r"\frac{3}{2}x^2", "1.5x^3", False, "coef_letter"),
    # --- units on both sides must agree; on one side they are ignored ---
    ("5 m^2", "5 m^3", False, "unit_power"),
    ("5 m^2", "5", True, "unit_power"),
    ("5 m^2", r"5 \text{ m}^2", True, "unit_power"),
    (r"12 \text{ cm}^2", "12 cm^3", False, "unit_power"),
    (r"12 \text{ cm}^2", "12", True, "unit_power"),
    (r"12\text{ cm}^2", r"12 \text{ cm}^2", True, "unit_power"),
    ("6 ft^2", "6 ft", False, "unit_power"),
    ("6 ft^2", "6", True, "unit_power"),
    (r"8 \text{ in}^3", r"8 \text{ in}^2", False, "unit_power"),
    (r"8 \text{ in}^3", "8", True, "unit_power"),
    (r"64 \text{ cm}^3", r"64\text{ cm}^2", False, "unit_power"),
    (r"64 \text{ cm}^3", r"\boxed{64}", True, "unit_power"),
    ("12", r"12 \text{ square units}", True, "unit_power"),
    ("12", "12 sq units", True, "unit_power"),
    (r"12 \text{ square feet}", r"12 \text{ ft}^2", True, "unit_power"),
    (r"12 \text{ square feet}", r"12 \text{ ft}^3", False, "unit_power"),
    (r"27 \text{ cubic inches}", r"27 \text{ in}^3", True, "unit_power"),
    (r"27 \text{ cubic inches}", r"27 \text{ in}^2", False, "unit_power"),
    ("5", "5 meters", True, "unit_power"),
    ("5", "5 m", True, "unit_power"),
    ("3.5", "3.5 kg", True, "unit_power"),
    ("40", "40 mph", True, "unit_power"),
    ("40", "40 miles per hour", True, "unit_power"),
    # --- scientific notation against its plain value ---
    ("32000", r"3.2 \times 10^4", True, "sci"),
    (r"3.2 \times 10^4", "32000", True, "sci"),
    (r"3.2 \times 10^4", "32,000", True, "sci"),
    (r"3.2 \times 10^{4}", "3.2e4", True, "sci"),
    (r"3.2 \times 10^{4}", "3.2E4", True, "sci"),
    (r"3.2 \times 10^4", "3200", False, "sci"),
    (r"3.2 \times 10^4", r"3.2 \times 10^5", False, "sci"),
    ("0.00015", r"1.5 \times 10^{-4}", True, "sci"),
    ("0.00015", "1.5e-4", True, "sci"),
    ("0.00015", r"1.5 \times 10^{-3}", False, "sci"),
    (r"6.02 \times 10^{23}", "602000000000000000000000", True, "sci"),
    (r"6.02 \times 10^{23}", r"6.02 \times 10^{22}", False, "sci"),
    (r"6.02 \times 10^{23}", r"6.2 \times 10^{23}", False, "sci"),
    (r"2 \times 10^6", "2,000,000", True, "sci"),
    (r"2 \times 10^6", "2000000", True, "sci"),
    (r"2 \times 10^6", "200000", False, "sci"),
    (r"1.5 \cdot 10^{-3}", "0.0015", True, "sci"),
    (r"1.5 \cdot 10^{-3}", "0.015", False, "sci"),
    (r"4.5\times10^{9}", "4500000000", True, "sci"),
    (r"7 \times 10^{-2}", "0.07", True, "sci"),
    (r"7 \times 10^{-2}", "0.7", False, "sci"),
    (r"8.1 \times 10^{3}", "8100", True, "sci"),
    (r"8.1 \times 10^{3}", "810", False, "sci"),
    (r"1.2 \times 10^{-5}", "0.000012", True, "sci"),
    (r"1.2 \times 10^{-5}", "0.00012", False, "sci"),
    ("45000", r"The population will be about $4.5 \times 10^4$.", True, "sci"),
    ("45000", r"The population will be about $4.5 \times 10^3$.", False, "sci"),
    ("2e", "2e", True, "sci"),
    ("2e", "2", False, "sci"),
    # --- decimal against fraction coefficients ---
    ("0.5x", r"\frac{x}{2}", True, "dec_coef"),
    ("0.5x", "x/2", True, "dec_coef"),
    (r"\frac{x}{2}", "0.5x", True, "dec_coef"),
    (r"\frac{1}{2}x", "0.5x", True, "dec_coef"),
    ("0.5x", "x/3", False, "dec_coef"),
    ("0.5x", "0.5y", False, "dec_coef"),
    ("0.5x", "5x", False, "dec_coef"),
    ("0.5x", "0.5", False, "dec_coef"),
    ("0.25x^2", r"\frac{x^2}{4}", True, "dec_coef"),
    ("0.25x^2", r"\frac{x^2}{2}", False, "dec_coef"),
    (r"\frac{3}{2}a + 2", "1.5a+2", True, "dec_coef"),
    (r"\frac{3}{2}a + 2", "1.5a-2", False, "dec_coef"),
    ("y = 0.5x + 1", r"y = \frac{1}{2}x + 1", True, "dec_coef"),
    ("y = 0.5x + 1", r"y = \frac{1}{2}x - 1", False, "dec_coef"),
    (r"\frac{x}{3}", "0.33x", False, "dec_coef"),
    (r"\frac{x}{3}", "0.333x", False, "dec_coef"),
    ("0.2t", r"\frac{t}{5}", True, "dec_coef"),
    ("1.25n", r"\frac{5n}{4}", True, "dec_coef"),
    ("1.25n", r"\frac{4n}{5}", False, "dec_coef"),
    ("-0.75x + 3", r"3 - \frac{3x}{4}", True, "dec_coef"),
    ("0.1x^2 + 0.2x", r"\frac{x^2 + 2x}{10}", True, "dec_coef"),
    # --- trigonometric identities ---
    (r"\sin^2 x", r"1 - \cos^2 x", True, "trig"),
    (r"\sin^2 x", r"1 + \cos^2 x", False, "trig"),
    (r"\sin 2x", r"2\sin x \cos x", True, "trig"),
    (r"\sin 2x", r"2\sin x", False, "trig"),
    (r"\sin 2x", r"\sin x \cos x", False, "trig"),
    (r"\sin(2x)", r"\sin 2x", True, "trig"),
    (r"\sin(2x)", r"2\sin(x)\cos(x)", True, "trig"),
    (r"\cos 2\theta", r"\cos^2\theta - \sin^2\theta", True, "trig"),
    (r"\cos 2\theta", r"1 - 2\sin^2\theta", True, "trig"),
    (r"\cos 2\theta", r"2\cos^2\theta - 1", True, "trig"),
    (r"\cos 2\theta", r"2\cos^2\theta + 1", False, "trig"),
    (r"\cos 2\theta", r"2\cos\theta", False, "trig"),
    (r"\tan^2 x", r"\sec^2 x - 1", True, "trig"),
    (r"\tan^2 x", r"\sec^2 x + 1", False, "trig"),
    (r"\tan x", r"\frac{\sin x}{\cos x}", True, "trig"),
    (r"\sin x", r"\cos\left(\frac{\pi}{2} - x\right)", True, "trig"),
    (r"\cos x", r"\sin\left(x + \frac{\pi}{2}\right)", True, "trig"),
    (r"\cos x", r"\sin\left(x - \frac{\pi}{2}\right)", False, "trig"),
    (r"\frac{1}{2}\sin 2x", r"\sin x\cos x", True, "trig"),
    (r"\csc^2 x", r"1 + \cot^2 x", True, "trig"),
    (r"\cos^2 x", r"\frac{1 + \cos 2x}{2}", True, "trig"),
    (r"\cos^2 x", r"\frac{1 - \cos 2x}{2}", False, "trig"),
    (r"\sin^2 x", r"\sin x^2", False, "trig"),
    (r"2\sin^2 x", r"1 - \cos 2x", True, "trig"),
    (r"\sin 3x", r"3\sin x - 4\sin^3 x", True, "trig"),
    (r"\sin 3x", r"3\sin x + 4\sin^3 x", False, "trig"),
    (r"\cos(x+y)", r"\cos x\cos y - \sin x \sin y", True, "trig"),
    (r"\cos(x+y)", r"\cos x\cos y + \sin x\sin y", False, "trig"),
    ("1", r"\sin^2 x + \cos^2 x", True, "trig"),
    ("2", r"\sin^2 x + \cos^2 x", False, "trig"),
    # --- expressions that agree at some points only ---
    ("x", "|x|", False, "numeric_trap"),
    ("x", r"\sqrt{x^2}", False, "numeric_trap"),
    ("x^2", "|x|^2", True, "numeric_trap"),
    ("x", r"x + \sin(\pi x)", False, "numeric_trap"),
    ("x", "(x-1)(x-2)(x-3) + x", False, "numeric_trap"),
    ("1", r"\cos(2\pi x)", False, "numeric_trap"),
    ("0", r"\sin(\pi x)", False, "numeric_trap"),
    ("x^3", "x^3 + 10^{-12}x", False, "numeric_trap"),
    ("e^x", "1 + x", False, "numeric_trap"),
    (r"\frac{x^2-1}{x-1}", "x+1", True, "numeric_trap"),
    # --- self-correction: the last box when presented as a correction ---
    ("15", SC_RECHECK, True, "self_correct"),
    ("12", SC_RECHECK, False, "self_correct"),
    ("22", SC_MISTAKE, True, "self_correct"),
    ("20", SC_MISTAKE, False, "self_correct"),
    (r"\frac{1}{6}", SC_DOUBLE, True, "self_correct"),
    (r"\frac{1}{4}", SC_DOUBLE, False, "self_correct"),
    ("9", SC_ACTUALLY, True, "self_correct"),
    ("8", SC_ACTUALLY, False, "self_correct"),
    ("2", SC_EXTRANEOUS, True, "self_correct"),
    ("-3", SC_EXTRANEOUS, False, "self_correct"),
    ("54", SC_ATFIRST, True, "self_correct"),
    ("45", SC_ATFIRST, False, "self_correct"),
    ("99", SC_CORRECTION, True, "self_correct"),
    ("100", SC_CORRECTION, False, "self_correct"),
    ("11", SC_THREE, True, "self_correct"),
    ("10", SC_THREE, False, "self_correct"),
    ("6", SC_SHORT, True, "self_correct"),
    ("5", SC_SHORT, False, "self_correct"),
    ("5", SC_SAME, True, "self_correct"),
    # --- hedges: alternatives offered, wrong whatever the gold ---
    ("12", H_OR, False, "hedge"),
    ("15", H_OR, False, "hedge"),
    ("3", H_MIGHT, False, "hedge"),
    ("4", H_MIGHT, False, "hedge"),
    ("2", H_CASES, False, "hedge"),
    ("-2", H_CASES, False, "hedge"),
    ("7", H_EITHER, False, "hedge"),
    ("8", H_EITHER, False, "hedge"),
    ("1", H_ROW, False, "hedge"),
    ("3", H_ROW, False, "hedge"),
    ("6", H_VALUES, False, "hedge"),
    ("9", H_VALUES, False, "hedge"),
    ("6", H_RECHECK_THEN_HEDGE, False, "hedge"),
    ("7", H_RECHECK_THEN_HEDGE, False, "hedge"),
    ("20", H_ALTERNATIVELY, False, "hedge"),
    ("21", H_ALTERNATIVELY, False, "hedge"),
    ("4", "4 or 5", False, "hedge"),
    ("4", r"\boxed{4, 5}", False, "hedge"),
    ("4, 5", r"\boxed{4, 5}", True, "hedge"),
    ("4, 5", r"\boxed{5, 4}", True, "hedge"),
    ("4, 5", r"\boxed{4}", False, "hedge"),
    # --- an expression the question asks for, stated as an equation ---
    ("17", r"Adding the equations, $x + y = 17$. \boxed{x+y=17}", True, "expr_eq",
     r"If $2x + 2y = 34$, what is $x + y$?"),
    ("17", r"\boxed{x + y = 17}", True, "expr_eq", r"Find the value of $x + y$."),
    ("17", r"\boxed{x + y = 16}", False, "expr_eq", r"Find the value of $x + y$."),
    ("17", r"\boxed{x - y = 17}", False, "expr_eq", r"Find the value of $x + y$."),
    ("17", r"\boxed{x+y=17}", False, "expr_eq", r"If $y = 0$ and $x + y = 17$, what is $x$?"),
    ("12", r"\boxed{a+b+c = 12}", True, "expr_eq", r"Compute $a+b+c$."),
    ("12", r"\boxed{abc = 12}", False, "expr_eq", r"Compute $a+b+c$."),
    ("5", r"So $m + n = \boxed{5}$.", True, "expr_eq", r"The fraction is $\frac{m}{n}$ in lowest terms. Find $m+n$."),
    ("5", r"\boxed{m+n=5}", True, "expr_eq", r"The fraction is $\frac{m}{n}$ in lowest terms. Find $m+n$."),
    ("25", r"\boxed{xy = 25}", True, "expr_eq", r"What is the value of $xy$?"),
    ("25", r"\boxed{x + y = 25}", False, "expr_eq", r"What is the value of $xy$?"),
    (r"\frac{3}{4}", r"\boxed{\frac{a}{b} = \frac{3}{4}}", True, "expr_eq", r"Find $\frac{a}{b}$."),
    ("8", r"\boxed{f(2) = 8}", True, "expr_eq", r"Let $f(x) = x^3$. Find $f(2)$."),
    ("8", r"\boxed{f(3) = 8}", False, "expr_eq", r"Let $f(x) = x^3$. Find $f(2)$."),
    ("10", r"\boxed{2x = 10}", True, "expr_eq", r"If $4x + 3 = 23$, what is $2x$?"),
    ("10", r"\boxed{2x = 10}", False, "expr_eq", r"If $x + 3 = 13$, what is $x$?"),
    # --- text golds ---
    (r"\text{Monday}", r"\boxed{\text{Tuesday}}", False, "text_gold"),
    (r"\text{Monday}", r"\boxed{\text{Monday}}", True, "text_gold"),
    (r"\text{Monday}", r"\boxed{Monday}", True, "text_gold"),
    (r"\text{Monday}", "The answer is Monday.", True, "text_gold"),
    (r"\text{Monday}", r"\boxed{5}", False, "text_gold"),
    (r"\text{Monday}", "I am not sure.", False, "text_gold"),
    ("Alice", r"\boxed{\text{Bob}}", False, "text_gold"),
    ("Alice", r"\boxed{\text{Alice}}", True, "text_gold"),
    ("Alice", "alice", True, "text_gold"),
    (r"\text{yes}", "Yes", True, "text_gold"),
    (r"\text{yes}", "No", False, "text_gold"),
    (r"\text{no}", r"\boxed{\text{No}}", True, "text_gold"),
    (r"\text{odd}", r"\boxed{\text{even}}", False, "text_gold"),
    ("Paris", "London", False, "text_gold"),
    (r"\text{Sunday}", r"So the party is on a $\boxed{\text{Sunday}}$.", True, "text_gold"),
    (r"\text{Sunday}", r"\boxed{7}", False, "text_gold"),
    (r"\text{Carla}", r"\boxed{\text{Carla and Dan}}", False, "text_gold"),
    (r"\text{Kelly}", r"\boxed{\text{Kelly}}", True, "text_gold"),
    # --- GSM8K-style responses ---
    ("18", GSM_EGGS, True, "gsm"),
    ("17", GSM_EGGS, False, "gsm"),
    ("25", GSM_COOKIES, True, "gsm"),
    ("26", GSM_COOKIES, False, "gsm"),
    ("7.5", GSM_MONEY, True, "gsm"),
    ("7.05", GSM_MONEY, False, "gsm"),
    ("75", GSM_MONEY, False, "gsm"),
    ("1200", GSM_TOTAL, True, "gsm"),
    ("120", GSM_TOTAL, False, "gsm"),
    ("18", "#### 18.00", True, "gsm"),
    ("18", "#### $18", True, "gsm"),
    ("1200", "#### 1,200", True, "gsm"),
    ("3", "He needs 3 more boxes. The answer is 3.", True, "gsm"),
    ("3", "He needs 3 more boxes. The answer is 4.", False, "gsm"),
    ("35", "So he worked 35 hours in total.", True, "gsm"),
    ("140", "The answer is: 140", True, "gsm"),
    ("140", "**Final Answer:** 140", True, "gsm"),
    ("140", "Final answer: 14", False, "gsm"),
    ("-4", "The smallest value is $-4$.", True, "gsm"),
    ("-4", "The smallest value is $4$.", False, "gsm"),
    ("64", "$8^2 = 64$", True, "gsm"),
    ("5", "x = 5", True, "gsm"),
    ("0.5", "The probability is 1/2.", True, "gsm"),
    ("0.5", "The probability is 1/3.", False, "gsm"),
    ("10", "Tom has 10 apples left.", True, "gsm"),
    ("10", "Tom has 11 apples left.", False, "gsm"),
    ("360", "The answer is $360.", True, "gsm"),
    ("360", "The answer is $36.", False, "gsm"),
    ("2.5", "It takes 2.5 hours.\n#### 2.5", True, "gsm"),
    ("2.5", "It takes 2.5 hours.\n#### 25", False, "gsm"),
    # --- MATH-style numbers ---
    (r"\frac{\sqrt{3}}{2}", r"\boxed{\frac{\sqrt3}{2}}", True, "math_num"),
    (r"\frac{\sqrt{3}}{2}", r"\boxed{\frac{\sqrt2}{2}}", False, "math_num"),
    (r"\frac{\sqrt{3}}{2}", r"\boxed{\frac{1}{2}}", False, "math_num"),
    (r"\frac{\sqrt{3}}{2}", "0.866", False, "math_num"),
    (r"2\sqrt{2}", r"\sqrt{8}", True, "math_num"),
    (r"2\sqrt{2}", r"\sqrt{6}", False, "math_num"),
    (r"2\sqrt{2}", "2.828", False, "math_num"),
    (r"\frac{5}{12}", r"\frac{10}{24}", True, "math_num"),
    (r"\frac{5}{12}", r"\frac{5}{13}", False, "math_num"),
    (r"\frac{5}{12}", "0.4167", False, "math_num"),
    (r"\dfrac{9}{4}", "2.25", True, "math_num"),
    (r"\dfrac{9}{4}", r"2\frac14", True, "math_num"),
    (r"\dfrac{9}{4}", "2.5", False, "math_num"),
    ("3", "3.0", True, "math_num"),
    ("3", "3.01", False, "math_num"),
    ("0.25", r"\frac14", True, "math_num"),
    ("0.25", r"\frac{1}{5}", False, "math_num"),
    (r"10\%", "1", False, "math_num"),
    (r"5\sqrt{2}", r"\sqrt{50}", True, "math_num"),
    (r"5\sqrt2", r"5\sqrt{3}", False, "math_num"),
    (r"5\sqrt2", "5", False, "math_num"),
    (r"\$42.50", "42.5", True, "math_num"),
    (r"\$42.50", r"\$42.05", False, "math_num"),
    (r"\$42.50", "4250", False, "math_num"),
    ("1/6", r"\frac{1}{6}", True, "math_num"),
    ("1/6", "0.1667", False, "math_num"),
    ("3\\pi", r"3 \pi", True, "math_num"),
    ("3\\pi", "9.42", False, "math_num"),
    ("i", "i", True, "math_num"),
    ("-i", "i", False, "math_num"),
    ("1+i", "i+1", True, "math_num"),
    ("1+i", "1-i", False, "math_num"),
    ("20", r"\boxed{20}", True, "math_num"),
    ("20", r"\boxed{02}", False, "math_num"),
    ("7", r"So $n = \boxed{7}$, since 7 is the only solution greater than 5.", True, "math_num"),
    ("7", r"So $n = \boxed{8}$, since 7 does not work.", False, "math_num"),
    (r"\frac{1}{2}", r"\boxed{\frac{2}{4}}", True, "math_num"),
    (r"\frac{1}{2}", r"\boxed{\frac{1}{2}x}", False, "math_num"),
    ("-1", r"\boxed{-1}", True, "math_num"),
    ("-1", r"\boxed{1}", False, "math_num"),
    # --- MATH-style expressions ---
    ("x^2 - 4", "(x-2)(x+2)", True, "math_expr"),
    ("x^2 - 4", "(x-2)^2", False, "math_expr"),
    (r"\frac{1}{x+1}", "(x+1)^{-1}", True, "math_expr"),
    (r"\frac{1}{x+1}", r"\frac{1}{x}+1", False, "math_expr"),
    ("2n+1", "1+2n", True, "math_expr"),
    ("2n+1", "2n-1", False, "math_expr"),
    ("n^2", "n^3", False, "math_expr"),
    ("x^2+7x+10", "(x+2)(x+5)", True, "math_expr"),
    ("x^2+7x+10", "(x+2)(x+4)", False, "math_expr"),
    (r"\frac{a+b}{2}", r"\frac{a}{2} + \frac{b}{2}", True, "math_expr"),
    (r"\frac{a+b}{2}", r"\frac{a}{2} + b", False, "math_expr"),
    (r"y = -\frac{3}{4}x + 5", r"y = 5 - 0.75x", True, "math_expr"),
    (r"y = -\frac{3}{4}x + 5", r"y = -\frac{4}{3}x + 5", False, "math_expr"),
    (r"\sqrt{x+1}", r"(x+1)^{1/2}", True, "math_expr"),
    (r"\sqrt{x+1}", r"\sqrt{x}+1", False, "math_expr"),
    (r"e^{2x}", r"(e^x)^2", True, "math_expr"),
    (r"e^{2x}", r"e^{x^2}", False, "math_expr"),
    # --- MATH-style structures ---
    ("(2, -3)", "(2,-3)", True, "math_struct"),
    ("(2, -3)", "(-3, 2)", False, "math_struct"),
    ("(2, -3)", "(2, 3)", False, "math_struct"),
    ("[-2, 5)", "[-2,5)", True, "math_struct"),
    ("[-2, 5)", "(-2,5)", False, "math_struct"),
    ("[-2, 5)", "[-2,5]", False, "math_struct"),
    (r"-1, \frac{1}{2}", r"\frac12, -1", True, "math_struct"),
    (r"-1, \frac{1}{2}", r"-1, 2", False, "math_struct"),
    (r"(-\infty,-2]\cup[2,\infty)", r"(-\infty,-2] \cup [2, \infty)", True, "math_struct"),
    (r"(-\infty,-2]\cup[2,\infty)", r"(-\infty,-2) \cup (2, \infty)", False, "math_struct"),
    (r"\begin{pmatrix} 3 \\ -1 \end{pmatrix}", r"\begin{pmatrix} 3 \\ -1 \end{pmatrix}", True, "math_struct"),
    (r"\begin{pmatrix} 3 \\ -1 \end{pmatrix}", r"\begin{pmatrix} -1 \\ 3 \end{pmatrix}", False, "math_struct"),
    (r"\text{(D)}", r"\boxed{D}", True, "math_struct"),
    (r"\text{(D)}", r"\boxed{B}", False, "math_struct"),
    (r"\{2, 4, 6\}", r"\{6, 4, 2\}", True, "math_struct"),
    (r"\{2, 4, 6\}", r"\{2, 4\}", False, "math_struct"),
]


def rows() -> list[tuple[str, str, bool, str, str]]:
    """Every row as ``(gold, response, expected, tag, question)`` (question ``""`` when not needed)."""
    return [tuple(r) if len(r) == 5 else (*r, "") for r in CASES]  # type: ignore[misc]
