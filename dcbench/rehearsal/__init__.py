"""Real-size rehearsal trees and released-format files: the real on-disk layouts at the
sizes users run, for the slow tests and bench/rehearse.py."""
