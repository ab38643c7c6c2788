/* The stop flag (see stop.h). */
#include "stop.h"

#include <signal.h>

static volatile sig_atomic_t stop_flag;

void cp_stop_request(void) { stop_flag = 1; }

int cp_stop_requested(void) { return stop_flag != 0; }
