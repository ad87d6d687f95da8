"""Signals of the case life cycle (blinker), so features react without importing each other."""

from blinker import Namespace

_signals = Namespace()

#: a case became ready or urgent (or lost its meeting): an assignment pass should run now.
#: sender: the Case
case_needs_scheduling = _signals.signal("case-needs-scheduling")
