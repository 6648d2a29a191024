"""The brand's rules (brand.yaml) applied to every reply: pass counts per rule and per system.

`check_reply` decides each verdict; this module only counts. A rule that gives no verdict on a
reply (for example a length rule with no bounds) is not counted for it, so a rate is always
"passed out of checked".
"""

from __future__ import annotations

from chatbot.brand.profile import BrandRules
from chatbot.brand.rule_check import check_reply
from chatbot.scorecard.card import RuleRate

__all__ = ["RuleTally"]


class RuleTally:
    """Pass counts per rule and per system, plus which rules each reply broke."""

    def __init__(self, rules: BrandRules) -> None:
        self.rules = rules
        self.per_rule: dict[str, dict[str, RuleRate]] = {}
        self.all_rules: dict[str, RuleRate] = {}

    def add(self, system: str, reply: str) -> list[str]:
        """Check one reply of `system`; returns the ids of the rules it broke."""
        results = check_reply(self.rules, reply)
        for result in results:
            rate = self.per_rule.setdefault(result.rule, {}).setdefault(system, RuleRate())
            rate.total += 1
            rate.passed += int(result.passed)
        failed = [r.rule for r in results if not r.passed]
        overall = self.all_rules.setdefault(system, RuleRate())
        if results:  # a brand without rules has nothing to pass
            overall.total += 1
            overall.passed += int(not failed)
        return failed
