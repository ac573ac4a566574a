from pathlib import Path
import pytest
from test_end_to_end import *  # noqa

@pytest.fixture(scope="module")
def project():
    return Path("/tmp/e2e_dev/project"), Path("/tmp/e2e_dev/medmnist")
