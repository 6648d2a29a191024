"""The run lifecycle: the queue and its worker processes (`jobs`), which adapter to chat with
(`adapters`), previews of a running job's latest checkpoint (`preview`) and starting a run from
the Compare votes (`from_votes`).

Nothing is imported here so that a worker process (`python -m chatbot.runs.jobs`) starts light.
"""
