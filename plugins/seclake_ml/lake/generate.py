"""Former home of the sample-lake generator, now the development package ``seclake_lakegen``.

Importing this module gives ``seclake_lakegen.generate`` itself; the MWAA bundle leaves this module out.
Import ``seclake_lakegen.generate`` instead.
"""

import sys

from seclake_lakegen import generate as _generate

sys.modules[__name__] = _generate
