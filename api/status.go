package api

import "net/http"

// HTTPStatus is the HTTP status an error envelope with code is answered
// with; the server writes it and the SDK fills it in for failed futures,
// whose errors arrive inside a 200 response.
func HTTPStatus(code string) int {
	switch code {
	case CodeInvalidArgument:
		return http.StatusBadRequest
	case CodeUnauthenticated:
		return http.StatusUnauthorized
	case CodePermissionDenied:
		return http.StatusForbidden
	case CodeNotFound:
		return http.StatusNotFound
	case CodePrivacyBudgetExceeded, CodeFailedPrecondition, CodeConflict:
		return http.StatusConflict
	case CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case CodeRateLimited:
		return http.StatusTooManyRequests
	case CodeUnavailable, CodeServerRestarted, CodeCanceled:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}
