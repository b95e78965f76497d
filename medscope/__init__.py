"""medscope: let a vision-language model think with clinical videos.

Sub-packages follow the architecture: ``video`` (frame-exact tools), ``agent`` (the think → tool → answer
loop), ``suite`` (ClinVideoSuite builder), ``train`` (SFT + GA-GRPO), ``eval`` (metrics, runs, tables) and
``report`` (the clinician's HTML evidence report). Importing the package loads nothing heavy.
"""

__version__ = "0.1.0"
