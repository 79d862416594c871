"""The TrainingJob API (pure): spec and status as frozen dataclasses, parsing of raw
objects with errors that name the field and the fix, condition types and reasons.
"""
