"""Fixed vocabularies shared by the features (and mirrored by CHECK constraints)."""

from __future__ import annotations

import functools

ROLES = ("coordinator", "specialist", "oncologist", "admin")

SPECIALTIES = (
    "medical_oncology",
    "surgical_oncology",
    "radiation_oncology",
    "pathology",
    "radiology",
    "nuclear_medicine",
    "nursing",
    "genetics",
    "palliative_care",
    "organ_specialist",
)

#: tumor sites and the specialties a case of that site needs by default
SITES: dict[str, tuple[str, ...]] = {
    "breast": ("medical_oncology", "surgical_oncology", "radiation_oncology", "pathology", "radiology"),
    "lung": ("medical_oncology", "surgical_oncology", "radiation_oncology", "pathology", "radiology"),
    "colorectal": ("medical_oncology", "surgical_oncology", "pathology", "radiology"),
    "upper_gi": ("medical_oncology", "surgical_oncology", "pathology", "radiology"),
    "prostate": ("medical_oncology", "radiation_oncology", "pathology", "radiology", "organ_specialist"),
    "gynae": ("medical_oncology", "surgical_oncology", "radiation_oncology", "pathology", "radiology"),
    "head_neck": ("surgical_oncology", "radiation_oncology", "pathology", "radiology"),
    "skin": ("medical_oncology", "surgical_oncology", "pathology"),
    "haematology": ("medical_oncology", "pathology", "radiology"),
    "neuro": ("surgical_oncology", "radiation_oncology", "pathology", "radiology"),
    "sarcoma": ("medical_oncology", "surgical_oncology", "radiation_oncology", "pathology", "radiology"),
    "urology": ("medical_oncology", "surgical_oncology", "radiation_oncology", "pathology", "radiology"),
}

CASE_STATUSES = ("intake", "ready", "scheduled", "discussed", "closed", "withdrawn")
#: not yet discussed, closed or withdrawn: the queue's cases (a passed deadline is a breach)
OPEN_CASE_STATUSES = ("intake", "ready", "scheduled")
#: the open cases a meeting can take: the scheduler places them, a coordinator adds them to an agenda
SCHEDULABLE_CASE_STATUSES = ("ready", "scheduled")
URGENCIES = ("routine", "urgent")
RECORD_KINDS = ("imaging", "pathology", "labs", "clinic_notes", "other")
MEETING_STATUSES = ("scheduled", "cancelled", "held")
MEETING_KINDS = ("regular", "urgent")
ASSIGNMENT_SOURCES = ("engine", "coordinator")
PARTSTATS = ("NEEDS-ACTION", "ACCEPTED", "DECLINED", "TENTATIVE", "DELEGATED")
ATTENDEE_ROLES = ("CHAIR", "REQ-PARTICIPANT", "OPT-PARTICIPANT")
CONCORDANCE = ("concordant", "minor_discrepancy", "major_discrepancy", "new_diagnosis")
RECOMMENDATIONS = (
    "surgery",
    "systemic_therapy",
    "radiotherapy",
    "surveillance",
    "clinical_trial",
    "further_workup",
    "other",
)
CONSENSUS_STATUSES = ("draft", "signed")
OUTBOX_STATUSES = ("pending", "sent", "dead")


@functools.lru_cache(maxsize=1024)  # the same few values on every row of every page
def label(value: str) -> str:
    """Human label for a vocabulary value: `surgical_oncology` → `Surgical oncology`."""
    return value.replace("_", " ").capitalize()
