#!/bin/sh
# Run once by Patroni on the node that bootstraps the cluster ($1: a connection string to it): the service's database.
set -eu
psql "$1" -v ON_ERROR_STOP=1 -c 'CREATE DATABASE balance'
