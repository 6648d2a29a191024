"""What users said about replies: Compare votes (`votes`) and the preference data made from them
for DPO or KTO (`preferences`)."""
