"""scripts/make_glue_submission.py: one flat zip of the eleven GLUE server files, checked first."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import zipfile

import pytest

