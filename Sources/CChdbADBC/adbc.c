#include "infrasight_adbc.h"
