"""The ceiling: functions-framework in the same ASGI mode as the service, parsing the same body
and answering a constant. No model, no validation: what the stack allows at best."""

import functions_framework.aio
import orjson
from starlette.responses import Response

ANSWER = orjson.dumps(
    {"setosa_probability": 0.98, "versicolor_probability": 0.02, "virginica_probability": 0.0, "target": "setosa"}
)


@functions_framework.aio.http
async def predict(request):
    orjson.loads(await request.body())
    return Response(ANSWER, media_type="application/json")
