"""The brand: its profile (`brand.yaml`), its rules and checking a reply against them.

`profile` is the model and its validated load/save; `guide_rules` finds checkable rules in a style
guide and `guide_prompt` condenses a system prompt from it; `rule_check` scores a reply against the
rules and `rule_fix` rewrites a reply to pass them; `emoji` is the emoji matching they share.
"""

from chatbot.brand.profile import (
    AddressRule,
    BrandProfile,
    BrandRules,
    EmojiRule,
    LengthRule,
    PreferredTerm,
    PrivacySettings,
    SystemPromptMode,
)

__all__ = [
    "AddressRule",
    "BrandProfile",
    "BrandRules",
    "EmojiRule",
    "LengthRule",
    "PreferredTerm",
    "PrivacySettings",
    "SystemPromptMode",
]
