"""`python -m services.tracking`: serve the tracking API on GIAO_TRACKING_PORT (8003).

`python -m services.tracking rebuild`: rebuild the read model from the topics (see rebuild.py).
"""

import sys

from services.tracking.settings import TrackingSettings

settings = TrackingSettings()
if sys.argv[1:] == ["rebuild"]:
    from services.tracking.rebuild import main

    sys.exit(main(settings))
elif sys.argv[1:]:
    sys.exit("usage: python -m services.tracking [rebuild]")
else:
    from services.tracking.app import create_app
    from shared.service import serve

    serve(create_app(settings), settings, settings.port)
