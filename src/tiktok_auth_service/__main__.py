import sys

from tiktok_auth_service.cli import main

sys.exit(main())
