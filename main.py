"""Functions Framework source: `functions-framework --target=predict`.

The settings are read here, when functions-framework loads this file; the model waits for the
first request that needs it.
"""

import functions_framework.aio

from function.app import create_predict

predict = functions_framework.aio.http(create_predict())
