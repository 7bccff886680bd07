/**
 * Google Forms -> Cities survey intake bridge (Apps Script, bound to the form).
 *
 * Posts every submitted response to the intake as
 *   {"response_id": ..., "submitted_at": ..., "answers": {"<question title>": value}}
 * with `Authorization: Bearer <token>`. Setup: docs/platforms.md, "Google Forms".
 *
 * Script properties (Project Settings -> Script properties):
 *   INTAKE_URL    https://<intake host>/v1/webhooks/google-forms/<survey id>
 *   INTAKE_TOKEN  the value of WEBHOOK_SECRET_<SURVEY>_GOOGLE_FORMS on the intake
 */

var MAX_ATTEMPTS = 4;

/** Installable trigger: From form -> On form submit. */
function onFormSubmit(e) {
  deliver_(e.response);
}

/** Run by hand once to send every response already in the form (the intake drops duplicates). */
function sendAllResponses() {
  FormApp.getActiveForm().getResponses().forEach(deliver_);
}

function deliver_(response) {
  var properties = PropertiesService.getScriptProperties();
  var url = properties.getProperty('INTAKE_URL');
  var token = properties.getProperty('INTAKE_TOKEN');
  if (!url || !token) {
    throw new Error('Set the INTAKE_URL and INTAKE_TOKEN script properties first.');
  }
  var answers = {};
  response.getItemResponses().forEach(function (itemResponse) {
    // Checkboxes give an array of choices, grids an array of rows; text and choices a string.
    answers[itemResponse.getItem().getTitle()] = itemResponse.getResponse();
  });
  var body = {
    response_id: response.getId(),
    submitted_at: response.getTimestamp().toISOString(),
    answers: answers,
  };
  var options = {
    method: 'post',
    contentType: 'application/json',
    headers: { Authorization: 'Bearer ' + token },
    payload: JSON.stringify(body),
    muteHttpExceptions: true,
  };
  for (var attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
    var reply = UrlFetchApp.fetch(url, options);
    var status = reply.getResponseCode();
    if (status === 202 || status === 200) {
      return; // accepted, or already accepted before
    }
    if (status !== 503 || attempt === MAX_ATTEMPTS) {
      // The problem document names what is wrong; the token is never part of it.
      console.error('intake answered ' + status + ' for response ' + body.response_id + ': ' +
        reply.getContentText().slice(0, 1000));
      return;
    }
    // Kafka is briefly unavailable: wait as the intake asks, then retry.
    var headers = reply.getHeaders();
    var wait = Number(headers['Retry-After'] || headers['retry-after'] || 5);
    Utilities.sleep(Math.min(wait, 30) * 1000 * attempt);
  }
}
